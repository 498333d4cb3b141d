/* fuzz_onnx.c: the ONNX model reader behind `trainer info` (trainer/onnx/onnx_read.c) on any bytes: every
 * rejection is bad input naming the file, and what it accepts is summarised within its bounds. */
#include <stdlib.h>
#include <string.h>

#include "onnx_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct onnx_info info; /* large (the metadata values): not on the stack */
    struct error err = {0};
    if (onnx_info_parse(data, size, "fuzz.onnx", &info, &err) != ERR_OK) {
        if (err.code != ERR_INPUT || strncmp(err.msg, "fuzz.onnx: ", 11) != 0)
            abort();
        return 0;
    }
    /* The counts are whole, the kept entries terminated strings. */
    if (info.n_inputs < 0 || info.n_outputs < 0 || info.n_nodes < 0 || info.n_op_types < 0 || info.n_meta < 0 ||
        info.n_weights < 0 || info.n_op_types > info.n_nodes)
        abort();
    for (int i = 0; i < info.n_inputs && i < ONNX_INFO_MAX_IO; i++)
        if (strlen(info.inputs[i].name) >= sizeof info.inputs[i].name)
            abort();
    for (int i = 0; i < info.n_meta && i < ONNX_INFO_MAX_META; i++)
        if (strlen(info.meta[i].value) >= sizeof info.meta[i].value)
            abort();
    return 0;
}
