/*
 * tests/support/smuggle.c - a body that tries SMTP smuggling (bare LF and
 * bare CR around a dot, commands after them, dot-led lines), as text and
 * as lines, and the bytes a relay must receive for it.  Used by
 * test_smtpcore.c and test_smtpcore_session.c.
 */
#include "tests/support/smuggle.h"

const char smuggle_text[] = ".starts with a dot\n"
                            "a\n.\nMAIL FROM:<evil@x>\n"     /* LF . LF */
                            "b\n.\r\nRCPT TO:<victim@y>\r\n" /* LF . CRLF */
                            "c\r.\rDATA\r"                   /* CR . CR */
                            "d\r\n.\r\nQUIT\r\n" /* a real CRLF . CRLF */
                            ".hidden\n..two\nend";
const char *const smuggle_lines[8] = { ".starts with a dot",
                                       "a\n.\nMAIL FROM:<evil@x>",
                                       "b\n.\r\nRCPT TO:<victim@y>",
                                       "c\r.\rDATA",
                                       "d\r\n.\r\nQUIT",
                                       ".hidden",
                                       "..two",
                                       "end" };
const char smuggle_wire[] =
    "..starts with a dot\r\na\r\n..\r\nMAIL FROM:<evil@x>\r\nb\r\n..\r\n"
    "RCPT TO:<victim@y>\r\nc\r\n..\r\nDATA\r\nd\r\n..\r\nQUIT\r\n..hidden\r\n"
    "...two\r\nend\r\n";
