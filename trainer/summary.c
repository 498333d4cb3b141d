/* summary.c: the Keras-like model summary (see summary.h). */
#include "summary.h"

#include <string.h>

const char *summary_count(char *buf, size_t size, long long n)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", n < 0 ? -n : n), o = 0;
    char tmp[48];
    if (n < 0)
        tmp[o++] = '-';
    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            tmp[o++] = ',';
        tmp[o++] = digits[i];
    }
    tmp[o] = '\0';
    snprintf(buf, size, "%s", tmp);
    return buf;
}

/* "conv2d_1 (Conv2D)"; Keras calls the Input layer's class InputLayer. */
static void layer_label(const struct layer_spec *s, char *buf, size_t size)
{
    const char *type = strcmp(s->ops->name, "Input") == 0 ? "InputLayer" : s->ops->name;
    snprintf(buf, size, "%s (%s)", s->name, type);
}

/* Keras's shape with the batch axis: "(None, 28, 28, 16)" or "(None, 10)". */
static void shape_label(const struct shape *s, char *buf, size_t size)
{
    if (s->rank == 3)
        snprintf(buf, size, "(None, %d, %d, %d)", s->h, s->w, s->c);
    else
        snprintf(buf, size, "(None, %d)", s->c);
}

static size_t layer_params(const struct layer_spec *s)
{
    size_t n = 0;
    for (int p = 0; p < s->n_params; p++)
        n += s->params[p].size;
    return n;
}

static void rule(FILE *out, int width, char c)
{
    for (int i = 0; i < width; i++)
        fputc(c, out);
    fputc('\n', out);
}

/* Keras's "Connected to" of input k: "conv2d_1[0][0]" (layer, node, tensor; each layer here has one of each). */
static void input_label(const struct model *m, const struct layer_spec *s, int k, char *buf, size_t size)
{
    snprintf(buf, size, "%s[0][0]", m->layers[s->inputs[k]].name);
}

void summary_print(FILE *out, const struct model *m, const char *name)
{
    char label[96], shape[64], count[32], from[80];
    /* Keras's minimum widths (65 columns in all; 98 with "Connected to", which only functional models have);
     * longer names widen the column instead of being cut. */
    int w_label = 29, w_shape = 26, w_params = 10, w_from = m->functional ? 33 : 0;
    for (int i = 0; i < m->n_layers; i++) {
        layer_label(&m->layers[i], label, sizeof label);
        shape_label(&m->layers[i].out, shape, sizeof shape);
        int l = (int)strlen(label) + 2, s = (int)strlen(shape) + 2;
        w_label = l > w_label ? l : w_label;
        w_shape = s > w_shape ? s : w_shape;
    }
    int width = w_label + w_shape + w_params + (w_from ? w_from + 2 : 0);
    if (name)
        fprintf(out, "Model: %s\n", name);
    rule(out, width, '_');
    fprintf(out, "%-*s%-*s%*s", w_label, "Layer (type)", w_shape, "Output Shape", w_params, "Param #");
    fprintf(out, w_from ? "  Connected to\n" : "\n");
    rule(out, width, '=');
    for (int i = 0; i < m->n_layers; i++) {
        const struct layer_spec *s = &m->layers[i];
        layer_label(s, label, sizeof label);
        shape_label(&s->out, shape, sizeof shape);
        fprintf(out, "%-*s%-*s%*zu", w_label, label, w_shape, shape, w_params, layer_params(s));
        for (int k = 0; w_from && i > 0 && k < s->n_inputs; k++) {
            input_label(m, s, k, from, sizeof from);
            if (k == 0)
                fprintf(out, "  %s", from);
            else
                fprintf(out, "\n%*s  %s", w_label + w_shape + w_params, "", from);
        }
        fputc('\n', out);
    }
    rule(out, width, '=');
    /* Parameters are float32: 4 bytes each. */
    fprintf(out, "Total params: %s (%.2f MB)\n", summary_count(count, sizeof count, (long long)m->n_params),
            (double)m->n_params * 4.0 / (1024.0 * 1024.0));
    /* BatchNormalization's moving averages are Keras's non-trainable weights. */
    size_t moving = model_moving_params(m);
    fprintf(out, "Trainable params: %s\n", summary_count(count, sizeof count, (long long)(m->n_params - moving)));
    fprintf(out, "Non-trainable params: %s\n", summary_count(count, sizeof count, (long long)moving));
    rule(out, width, '_');
}

const char *summary_optimizer(char *buf, size_t size, const struct optim_conf *c)
{
    switch (c->kind) {
    case OPTIM_SGD:
        snprintf(buf, size, "sgd, lr %g (momentum %g%s)", c->lr, c->momentum, c->nesterov ? ", nesterov" : "");
        break;
    case OPTIM_RMSPROP: snprintf(buf, size, "rmsprop, lr %g (rho %g, epsilon %g)", c->lr, c->rho, c->eps); break;
    case OPTIM_ADAM:
        snprintf(buf, size, "adam, lr %g (beta_1 %g, beta_2 %g, epsilon %g)", c->lr, c->beta1, c->beta2, c->eps);
        break;
    case OPTIM_ADAMW:
        snprintf(buf, size, "adamw, lr %g (weight_decay %g, beta_1 %g, beta_2 %g, epsilon %g)", c->lr,
                 c->weight_decay, c->beta1, c->beta2, c->eps);
        break;
    case OPTIM_LARS:
        snprintf(buf, size, "lars, lr %g (momentum %g, weight_decay %g, eta %g)", c->lr, c->momentum,
                 c->weight_decay, c->lars_eta);
        break;
    default: snprintf(buf, size, "%s, lr %g", optim_kind_name(c->kind), c->lr); break;
    }
    size_t len = strlen(buf);
    if (c->weight_decay > 0 && c->kind != OPTIM_ADAMW && c->kind != OPTIM_LARS && len < size)
        len += (size_t)snprintf(buf + len, size - len, ", weight_decay %g", c->weight_decay);
    if (c->clipnorm > 0 && len < size)
        len += (size_t)snprintf(buf + len, size - len, ", clipnorm %g", c->clipnorm);
    if (c->global_clipnorm > 0 && len < size)
        snprintf(buf + len, size - len, ", global_clipnorm %g", c->global_clipnorm);
    return buf;
}
