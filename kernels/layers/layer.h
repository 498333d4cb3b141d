/* layer.h: a layer kind as a table of operations, the parsed description of one layer (spec) and its
 * runtime state for one batch size (layer). Each kind lives in its own file and exports one
 * `const struct layer_ops`; layer_find() looks kinds up by their model-file name. */
#ifndef TRAINER_LAYER_H
#define TRAINER_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "args.h"
#include "dnn.h"
#include "error.h"

enum activation { ACT_LINEAR, ACT_RELU, ACT_SOFTMAX, ACT_SIGMOID, ACT_TANH };

/* Names as Keras spells them, indexed by enum activation; NULL-terminated (for args_choice). */
extern const char *const activation_names[];

/* A tensor's shape per sample: rank 3 is (h, w, c) channels-last, rank 1 is (c) features (h = w = 1). */
struct shape {
    int rank;
    int h, w, c;
};

static inline long shape_size(const struct shape *s) { return (long)s->h * s->w * s->c; }

/* Kind-specific configuration, filled by ops->parse. */
/* kernel_regularizer: Keras's L1L2 (l1(x), l2(x), l1_l2(l1, l2)): adds l1*sum|w| + l2*sum(w^2) of the kernel to the
 * loss. 0 and 0: none. */
struct regularizer {
    double l1, l2;
};
/* kernel_initializer: Keras's names, indexed by initializer_names; glorot_uniform is Keras's default. He's are
 * the ResNets' (Keras's cifar10_resnet.py uses he_normal). */
enum initializer { INIT_GLOROT_UNIFORM, INIT_GLOROT_NORMAL, INIT_HE_NORMAL, INIT_HE_UNIFORM };
extern const char *const initializer_names[];
struct conv_cfg {
    int filters, kh, kw, sh, sw, same, use_bias;
    enum activation act;
    struct regularizer kernel_reg;
    int kernel_init;        /* enum initializer */
};
struct pool_cfg {
    int ph, pw, sh, sw, same;
};
struct dense_cfg {
    int units, use_bias;
    enum activation act;
    struct regularizer kernel_reg;
    int kernel_init;        /* enum initializer */
};
struct concat_cfg {
    int axis;               /* as written: -1 or 3 (channels) */
};
struct zero_pad_cfg {
    int top, bottom, left, right;
};
struct dropout_cfg {
    double rate;
};
struct act_cfg {
    enum activation act;
};
struct input_cfg {
    int h, w, c;
};
struct batchnorm_cfg {
    int axis;               /* as written: -1, or the channel axis counted with the batch (3, or 1 after Dense) */
    double momentum;        /* of the moving averages: moving = moving * momentum + batch * (1 - momentum) */
    double epsilon;         /* added to the variance */
    int center, scale;      /* whether beta / gamma exist */
};

/* The augmentation layers (augment.h): RandomFlip, RandomTranslation, RandomRotation, RandomZoom, RandomCrop. */
enum augment_fill { AUG_FILL_REFLECT, AUG_FILL_WRAP, AUG_FILL_CONSTANT, AUG_FILL_NEAREST };
enum augment_interp { AUG_INTERP_NEAREST, AUG_INTERP_BILINEAR };
struct augment_cfg {
    int flip_h, flip_v;     /* RandomFlip's mode */
    /* height_factor (RandomRotation: factor) and width_factor as bounds [lo, hi] of the uniform draw; *_form is
     * how it was written: 1 one number v (lo = -v, hi = v), 2 a pair (lo, hi), 0 None (RandomZoom's width). */
    double h_lo, h_hi, w_lo, w_hi;
    int h_form, w_form;
    enum augment_fill fill;
    enum augment_interp interp;
    double fill_value;
    int height, width;      /* RandomCrop's target size */
    int has_seed;           /* seed=N given: the draws use N instead of the layer's position */
    long seed;
};

/* A parameter tensor of a layer: its name in Keras ("kernel", "bias"), its Keras shape, and its
 * offset in the parameter slab (set by the network). A moving average (BatchNormalization's moving_mean and
 * moving_variance, Keras's non-trainable weights) is not trained: its slot in the gradient slab carries this
 * batch's statistic, summed over the ranks like a gradient, and the optimizer folds it in with `momentum`
 * instead of a gradient step (optim.h). */
struct param_info {
    const char *name;
    int rank;
    long dims[4];
    size_t size;     /* elements */
    size_t offset;   /* into the slab */
    int moving;      /* 1: a moving average, not trained */
    double momentum; /* of that average */
};

#define LAYER_MAX_PARAMS 4
/* Add and Concatenate read several tensors; every other kind reads one. */
#define LAYER_MAX_INPUTS 8

struct layer_ops;

struct layer_spec {
    const struct layer_ops *ops;
    char name[48];   /* Keras-style unique name: conv2d_1, max_pooling2d_2, dense_1 ... */
    int line;        /* where it came from, for messages (0: not from a text file) */
    int index;       /* position in the model, 0 = the Input; layers are in topological order */
    /* Explicit edges: the layers (indices into model.layers, each < index) whose outputs this one reads, in
     * argument order. A one-layer-a-line file reads the line before; model_infer fills that in when a parser
     * left n_inputs at 0. The Input reads nothing. */
    int n_inputs;
    int inputs[LAYER_MAX_INPUTS];
    int explicit_name;  /* 1: named in the file (name='...', or a Keras file's name), written back as such */
    /* Set by model_infer: how many inputs of later layers read this one's output (the last layer's is the
     * model's output), and whether backward must compute the gradient of the inputs (some layer upstream
     * has weights). */
    int n_readers;
    int need_diff_src;
    union {
        struct conv_cfg conv;
        struct pool_cfg pool;
        struct dense_cfg dense;
        struct dropout_cfg dropout;
        struct act_cfg act;
        struct input_cfg input;
        struct batchnorm_cfg bn;
        struct concat_cfg concat;
        struct zero_pad_cfg pad;
        struct augment_cfg aug;
    } u;
    /* Filled by model_infer before ops->infer: ins[k] is the output shape of inputs[k], and in = ins[0]. */
    struct shape ins[LAYER_MAX_INPUTS];
    /* Filled by ops->infer from the input shape: */
    struct shape in, out;
    int n_params;
    struct param_info params[LAYER_MAX_PARAMS];
    /* The model's final softmax is not computed by the layer: the network fuses it with the loss
     * (forward: logits, then softmax in the loss module). Set by model_infer on the last layer. */
    int softmax_in_loss;
};

/* Runtime state of one layer for one batch size (a network keeps one set per batch size it has seen). */
struct layer {
    const struct layer_spec *spec;
    const struct layer_ops *ops; /* what runs it: spec->ops, or a kernel that runs the next layer too */
    int absorbed;               /* run by the layer before it (such a kernel): nothing of its own runs, and
                                   its dst is that layer's */
    int n;                      /* samples in the batch */
    dnnl_memory_desc_t src_md;  /* what forward receives and backward's diff_src must be: the previous
                                   layer's dst_md */
    dnnl_memory_desc_t dst_md;  /* what forward produces and backward receives as diff_dst */
    dnnl_memory_t dst;          /* forward output (owned) */
    dnnl_memory_t diff_src;     /* backward output (owned; NULL for the first layer after Input) */
    /* Set by the network before create when a ReLU layer feeds a MaxPooling2D: the ReLU's derivative is then
     * applied by the pooling, to its (4x smaller) gradient, masked where its output is not > 0. Max and ReLU
     * commute and the mask is a select, so the gradient is the same, bit for bit. */
    int relu_bwd_in_next;       /* on the ReLU layer: skip its own activation derivative */
    int relu_bwd_of_prev;       /* on the pooling: apply it */
    /* Multi-input kinds (ops->multi_input): the layouts and memories of their inputs in spec->inputs order, set by
     * the network before create (src_md is src_mds[0]); backward writes diff_srcs[k] in src_mds[k] (diff_src is
     * diff_srcs[0]). Unused by one-input kinds, which get their input as forward's `src`. */
    dnnl_memory_desc_t src_mds[LAYER_MAX_INPUTS];
    dnnl_memory_t srcs[LAYER_MAX_INPUTS];
    dnnl_memory_t diff_srcs[LAYER_MAX_INPUTS];
    /* 1: the gradient of input k is the output's own gradient (Add, with the input in the output's layout): the
     * network passes that memory on, and backward writes no diff_srcs[k]. Set by create. */
    int diff_passes[LAYER_MAX_INPUTS];
    float *w;                   /* this layer's parameters in the slab, Keras layout, params[] order */
    float *dw;                  /* same in the gradient slab */
    void *priv;                 /* kind-specific primitives and buffers */
};

/* Sums v (n,) over every rank that trains on the global batch, in place, the same result on each (the network
 * gets it from the trainer: kernels/ knows nothing of MPI). NULL: this process is the only one. */
typedef int (*step_sum_fn)(double *v, int n, void *arg, struct error *err);

/* What forward needs to know about the step beyond its tensors (dropout masks depend on it). */
struct step_ctx {
    const struct dnn *dnn;
    int training;               /* Dropout is the identity unless training */
    uint64_t seed;
    uint64_t step;              /* global optimizer step, 0-based */
    const int64_t *sample_ids;  /* (n,) global index of each sample of the batch in the dataset */
    int global_batch;           /* training: samples in the global batch, over all ranks */
    /* Training: BatchNormalization's statistics are those of the global batch (as PyTorch's SyncBatchNorm),
     * so that the updates do not depend on the number of ranks. Each such layer calls `sum` once in forward and
     * once in backward, in layer order (net_train_skip replays the calls of a rank with nothing to run). */
    step_sum_fn sum;
    void *sum_arg;
    uint64_t epoch;             /* training: 0-based epoch (the augmentation layers' draws depend on it) */
};

/* One table per layer kind. The Input never runs (the network feeds the scaled images as its output), so
 * layer_input has NULL create, forward, backward, destroy and init_params; init_params is also NULL for
 * every kind without parameters. */
struct layer_ops {
    const char *name;         /* model-file and Keras class name: "Conv2D" */
    const char *keras_prefix; /* for unique names: "conv2d" */
    /* Reads the call's arguments into spec->u (Keras names, positions and defaults). */
    int (*parse)(struct layer_spec *spec, struct args *a, struct error *err);
    /* From spec->in, sets spec->out and spec->params[] (name, rank, Keras dims, size). ERR_INPUT when the
     * layer cannot be built on that input (kernel larger than input, zero filters ...). */
    int (*infer)(struct layer_spec *spec, struct error *err);
    /* Creates primitives and owned memories for batch l->n, given l->src_md; sets l->dst_md, l->dst,
     * and l->diff_src unless need_diff_src is 0. l->w and l->dw are already set. */
    int (*create)(struct layer *l, const struct dnn *d, int need_diff_src, struct error *err);
    /* l->dst = f(src). src has layout l->src_md. */
    int (*forward)(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, struct error *err);
    /* From diff_dst (layout l->dst_md): accumulates nothing, *overwrites* l->dw with this batch's
     * gradient sum, and writes l->diff_src when the layer was created with need_diff_src.
     * src is the same memory forward received. */
    int (*backward)(struct layer *l, const struct step_ctx *ctx, dnnl_memory_t src, dnnl_memory_t diff_dst,
                    struct error *err);
    void (*destroy)(struct layer *l);
    /* Keras default initial values (glorot_uniform kernels, zero biases) into w; rnd() gives uniform
     * [0, 1) numbers from the network's generator. NULL for layers without parameters. */
    void (*init_params)(const struct layer_spec *spec, float *w, double (*rnd)(void *state), void *state);
    /* The layer as a model-file line with every argument explicit, e.g.
     * `Conv2D(filters=16, kernel_size=(2, 2), strides=(1, 1), padding='same', activation='relu', use_bias=True)`.
     * Returns what snprintf returns. */
    int (*to_text)(const struct layer_spec *spec, char *buf, size_t size);
    /* How many doubles a training forward (forward = 1) or backward sums over the ranks through ctx->sum, in
     * one call; 0 for none. NULL for kinds that never call it (all but BatchNormalization). */
    int (*step_sums)(const struct layer_spec *spec, int forward, int need_diff_src);
    /* Multiply-adds of one image's forward pass (bench's FLOP count: 2 x 3 x this for a training step, as the
     * peer counts); NULL: none worth counting (pooling, activations, copies). */
    double (*forward_macs)(const struct layer_spec *spec);
    /* 1: the kind reads two or more tensors (Add, Concatenate: struct layer's srcs[] and diff_srcs[]); 0: one. */
    int multi_input;
};

/* The table of layer kinds; NULL when `name` is unknown. */
const struct layer_ops *layer_find(const char *name);
/* For "did you mean" messages and docs: the table, NULL-terminated. */
extern const struct layer_ops *const layer_kinds[];

/* Every kind. */
extern const struct layer_ops layer_input, layer_conv2d, layer_max_pooling2d, layer_average_pooling2d,
    layer_global_average_pooling2d, layer_global_max_pooling2d, layer_flatten, layer_dense, layer_dropout,
    layer_activation, layer_batchnorm, layer_add, layer_concatenate, layer_zero_padding2d;
extern const struct layer_ops layer_random_flip, layer_random_translation, layer_random_rotation,
    layer_random_zoom, layer_random_crop;
/* One of those five: no weights, no gradient, plain channels-last images out. */
int layer_is_augmentation(const struct layer_ops *ops);

/* glorot_uniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)). */
void layer_glorot_uniform(float *w, size_t n, long fan_in, long fan_out, double (*rnd)(void *), void *state);
/* Keras's VarianceScaling as tf.keras 2 defines it: scale / fan (fan_in, or the mean of both fans for Glorot);
 * normal: a normal truncated at two standard deviations, stddev sqrt(scale / fan) / 0.8796 (the truncated
 * normal's own deviation corrected); uniform: U(-sqrt(3 scale / fan), +). */
void layer_init_weights(float *w, size_t n, enum initializer init, long fan_in, long fan_out, double (*rnd)(void *),
                        void *state);

/* Keras conv/pool output size and the oneDNN padding for `same`: Keras/TF puts the extra row/column of an
 * even total padding at the bottom/right. */
int layer_out_size(int in, int k, int s, int same);
void layer_same_padding(int in, int k, int s, int *pad_l, int *pad_r);

#endif
