/*
 * api/ui_data.S - the message log page (ui/index.html, ui/app.js,
 * ui/app.css, ui/icon.svg), embedded into the binary by the assembler (.incbin), each
 * followed by a NUL; api/ui.c serves them under /ui/.
 */
    .section .rodata
    .global mailpool_ui_html
mailpool_ui_html:
    .incbin "ui/index.html"
    .global mailpool_ui_html_end
mailpool_ui_html_end:
    .byte 0
    .global mailpool_ui_js
mailpool_ui_js:
    .incbin "ui/app.js"
    .global mailpool_ui_js_end
mailpool_ui_js_end:
    .byte 0
    .global mailpool_ui_css
mailpool_ui_css:
    .incbin "ui/app.css"
    .global mailpool_ui_css_end
mailpool_ui_css_end:
    .byte 0
    .global mailpool_ui_icon
mailpool_ui_icon:
    .incbin "ui/icon.svg"
    .global mailpool_ui_icon_end
mailpool_ui_icon_end:
    .byte 0
    .section .note.GNU-stack, "", @progbits
