/* fuzz_callback.c: the --callback reader (trainer/callbacks.c, on kernels/model/model.c's call parser) on any text. A
 * callback it accepts must read back from its canonical text (what a checkpoint stores) to the same text; every
 * rejection is a usage error placed as "--callback:1:COL". */
#include <stdlib.h>
#include <string.h>

#include "callbacks.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct callbacks c, back;
    struct error err = {0};
    char *text = fuzz_string(data, size);
    callbacks_init(&c);
    if (callbacks_add(&c, text, 1, &err) == ERR_OK) {
        char canon[sizeof c.cb[0].text + 1], again[sizeof canon];
        callbacks_text(&c, canon, sizeof canon);
        if (callbacks_from_text(&back, canon, &err) != ERR_OK)
            abort(); /* accepted, but its checkpoint text would not resume */
        callbacks_text(&back, again, sizeof again);
        if (strcmp(canon, again) != 0 || back.cb[0].maximize != c.cb[0].maximize)
            abort();
    } else if (err.code != ERR_USAGE || strncmp(err.msg, "--callback:1:", 13) != 0) {
        abort();
    }
    free(text);
    return 0;
}
