/*
 * api/openapi_data.S - api/openapi.json, embedded into the binary by the
 * assembler (.incbin), NUL-terminated; api/openapi.c serves it.
 */
    .section .rodata
    .global mailpool_openapi_json
    .type mailpool_openapi_json, @object
mailpool_openapi_json:
    .incbin "api/openapi.json"
    .global mailpool_openapi_json_end
mailpool_openapi_json_end:
    .byte 0
    /* The length, computed here: C may not subtract two objects' addresses. */
    .balign 8
    .global mailpool_openapi_json_size
    .type mailpool_openapi_json_size, @object
mailpool_openapi_json_size:
    .quad mailpool_openapi_json_end - mailpool_openapi_json
    .section .note.GNU-stack, "", @progbits
