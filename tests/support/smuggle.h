/*
 * tests/support/smuggle.h - the smuggling body the smtpcore tests send.
 */
#ifndef TESTS_SUPPORT_SMUGGLE_H
#define TESTS_SUPPORT_SMUGGLE_H

/* The body as one text, with LF . LF, LF . CRLF, CR . CR, a real
   CRLF . CRLF and dot-led lines. */
extern const char smuggle_text[];
/* The same body as its 8 lines. */
extern const char *const smuggle_lines[8];
/* What the relay receives between DATA's 354 and the final dot: every
   line ending CRLF, every leading dot doubled. */
extern const char smuggle_wire[];

#endif
