/* fuzz_keras_config.c: the Keras model_config reader (kernels/model/keras_config.c) on any text. */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct model m;
    struct error err = {0};
    char *json = fuzz_string(data, size);
    if (keras_config_to_model(json, "fuzz.h5", &m, &err) != ERR_OK &&
        (err.code != ERR_INPUT || strncmp(err.msg, "fuzz.h5", 7) != 0))
        abort(); /* every rejection is bad input and names the file */
    free(json);
    return 0;
}
