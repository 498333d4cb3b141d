/* summary.h: a model described as Keras's model.summary() does, for `train` (at start) and `info`. */
#ifndef TRAINER_SUMMARY_H
#define TRAINER_SUMMARY_H

#include <stddef.h>
#include <stdio.h>

#include "model.h"
#include "optim.h"

/* Writes to out:
 *   Model: NAME
 *   ___________________________________________________________
 *   Layer (type)                  Output Shape           Param #
 *   ===========================================================
 *   input_1 (InputLayer)          (None, 28, 28, 1)            0
 *   conv2d_1 (Conv2D)             (None, 28, 28, 16)          80
 *   ...
 *   ===========================================================
 *   Total params: 303,926 (1.16 MB)
 *   Trainable params: 303,926
 *   Non-trainable params: 0
 *   ___________________________________________________________
 * The columns widen to the longest name and shape, so nothing is cut. No "Model:" line when name is NULL. */
void summary_print(FILE *out, const struct model *m, const char *name);

/* n with thousands separators, "1,234,567", into buf (24 bytes are always enough); returns buf. */
const char *summary_count(char *buf, size_t size, long long n);

/* "rmsprop, lr 0.001 (rho 0.9, epsilon 1e-07)": the optimizer and the hyper-parameters it uses; returns buf. */
const char *summary_optimizer(char *buf, size_t size, const struct optim_conf *c);

#endif
