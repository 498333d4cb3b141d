/* fuzz_model_parse.c: the model-file reader (kernels/model/model.c) on any text. A model it accepts must also
 * survive the way to Keras JSON and back (what a checkpoint stores) unchanged. */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_util.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct model m, back; /* large (the text buffer): not on the stack */
    struct error err = {0};
    char *text = fuzz_string(data, size);
    if (model_parse(&m, text, "fuzz.model", &err) == ERR_OK) {
        char *json = keras_config_from_model(&m);
        if (!json || keras_config_to_model(json, "fuzz.json", &back, &err) != ERR_OK ||
            strcmp(back.text, m.text) != 0 || back.n_params != m.n_params)
            abort(); /* a model the trainer accepts but cannot checkpoint as it is */
        free(json);
    } else if (err.code != ERR_INPUT || strncmp(err.msg, "fuzz.model", 10) != 0) {
        abort(); /* every rejection is bad input and names the file */
    }
    free(text);
    return 0;
}
