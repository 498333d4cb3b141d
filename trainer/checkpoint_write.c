/* checkpoint_write.c: checkpoint_write: a Keras 2 full-model HDF5 file (model_config, training_config,
 * /model_weights) plus /trainer, built in memory and written atomically (h5file.h). */
#define _POSIX_C_SOURCE 200809L

#include "checkpoint.h"

#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_hdf5.h"
#include "h5file.h"

/* What the files claim to be: the Keras whose layout they follow (2.1.6 reads and writes this layout). */
#define KERAS_VERSION "2.1.6"
#define KERAS_VERSION_FUNCTIONAL "2.4.0"
#define KERAS_BACKEND "tensorflow"

/* The first failure of a write, with the reason, taken at once: every later HDF5 call clears the stack. */
#define WHY_SIZE 256
struct writer {
    hid_t file;
    char why[WHY_SIZE];
};

/* The innermost HDF5 message, where the problem was found (the outer ones only say "unable to ..."). */
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0)
        snprintf(data, WHY_SIZE, "%s", e->desc ? e->desc : "HDF5 error");
    return 0;
}

/* Records why the last HDF5 call failed, in HDF5's words. Returns -1 for the caller to pass up. */
static int writer_fail(struct writer *w)
{
    if (w->why[0])
        return -1;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, w->why);
    if (!w->why[0])
        snprintf(w->why, sizeof w->why, "HDF5 error");
    return -1;
}

/* An attribute of type ftype over `space`, written from buf (mtype) unless buf is NULL. */
static int put_attr(struct writer *w, hid_t obj, const char *name, hid_t ftype, hid_t mtype, hid_t space,
                    const void *buf)
{
    hid_t a = space < 0 ? H5I_INVALID_HID : H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (a < 0 || (buf && H5Awrite(a, mtype, buf) < 0))
        rc = writer_fail(w);
    close_id(&a, H5Aclose);
    return rc;
}

static int put_scalar(struct writer *w, hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    int rc = put_attr(w, obj, name, ftype, mtype, space, v);
    close_id(&space, H5Sclose);
    return rc;
}

static int put_i64(struct writer *w, hid_t obj, const char *name, int64_t v)
{
    return put_scalar(w, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static int put_i32(struct writer *w, hid_t obj, const char *name, int v)
{
    return put_scalar(w, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}

static int put_f64(struct writer *w, hid_t obj, const char *name, double v)
{
    return put_scalar(w, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

/* A variable-length ASCII string, as Keras (h5py) stores model_config and friends. */
static int put_string(struct writer *w, hid_t obj, const char *name, const char *s)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0)
        rc = writer_fail(w);
    else
        rc = put_scalar(w, obj, name, type, type, &s);
    close_id(&type, H5Tclose);
    return rc;
}

/* A list of names as Keras stores layer_names and weight_names: fixed-length, null-padded to the longest;
 * an empty list is what numpy makes of [] (float64, shape (0,)), which Keras reads back as empty. */
static int put_names(struct writer *w, hid_t obj, const char *name, const char *const *v, int n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL), type = H5I_INVALID_HID;
    size_t longest = 1;
    char *buf = NULL;
    int rc = -1;
    if (n == 0) {
        rc = put_attr(w, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space, NULL);
        goto done;
    }
    for (int i = 0; i < n; i++)
        longest = strlen(v[i]) > longest ? strlen(v[i]) : longest;
    if (!(buf = calloc((size_t)n, longest))) {
        snprintf(w->why, sizeof w->why, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * longest, v[i], strlen(v[i]));
    type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, longest) < 0 || H5Tset_strpad(type, H5T_STR_NULLPAD) < 0)
        rc = writer_fail(w);
    else
        rc = put_attr(w, obj, name, type, type, space, buf);
done:
    free(buf);
    close_id(&type, H5Tclose);
    close_id(&space, H5Sclose);
    return rc;
}

/* Variable-length UTF-8 strings, as the dataset's class_names (h5py reads a list of str). */
static int put_utf8_names(struct writer *w, hid_t obj, const char *name, const char *const *v, int n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL), type = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (space < 0 || type < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
        rc = writer_fail(w);
    else
        rc = put_attr(w, obj, name, type, type, space, v);
    close_id(&type, H5Tclose);
    close_id(&space, H5Sclose);
    return rc;
}

/* A float32 dataset of the given shape, contiguous, as Keras writes weights. */
static int put_floats(struct writer *w, hid_t obj, const char *name, int rank, const hsize_t *dims,
                      const float *data)
{
    hid_t space = H5Screate_simple(rank, dims, NULL), d = H5I_INVALID_HID;
    int rc = 0;
    if (space < 0 || (d = H5Dcreate2(obj, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = writer_fail(w);
    close_id(&d, H5Dclose);
    close_id(&space, H5Sclose);
    return rc;
}

static hid_t new_group(struct writer *w, hid_t parent, const char *name)
{
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        writer_fail(w);
    return g;
}

/* Keras 2 get_config() of the optimizer, in Keras's key order; lr etc. with 15 digits (0.001, not
 * 0.0010000000000000000208): informative for Keras, the exact values are in /trainer. */
static char *training_config(const struct optim_conf *c, double label_smoothing, int64_t accumulate)
{
    json_t *oc = NULL, *loss;
    switch (c->kind) {
    case OPTIM_SGD:
        oc = json_pack("{s:s, s:{s:f, s:f, s:f, s:b}}", "class_name", "SGD", "config", "lr", c->lr, "momentum",
                       c->momentum, "decay", 0.0, "nesterov", c->nesterov);
        break;
    case OPTIM_RMSPROP:
        oc = json_pack("{s:s, s:{s:f, s:f, s:f, s:f}}", "class_name", "RMSprop", "config", "lr", c->lr, "rho",
                       c->rho, "decay", 0.0, "epsilon", c->eps);
        break;
    case OPTIM_ADAM:
        oc = json_pack("{s:s, s:{s:f, s:f, s:f, s:f, s:f, s:b}}", "class_name", "Adam", "config", "lr", c->lr,
                       "beta_1", c->beta1, "beta_2", c->beta2, "decay", 0.0, "epsilon", c->eps, "amsgrad", 0);
        break;
    case OPTIM_ADAMW:
        /* Keras 3's (and tf.keras 2.11+'s) AdamW. */
        oc = json_pack("{s:s, s:{s:s, s:f, s:f, s:f, s:f, s:f, s:b}}", "class_name", "AdamW", "config", "name",
                       "AdamW", "learning_rate", c->lr, "weight_decay", c->weight_decay, "beta_1", c->beta1,
                       "beta_2", c->beta2, "epsilon", c->eps, "amsgrad", 0);
        break;
    case OPTIM_LARS:
        /* No Keras class: the TensorFlow Model Garden's LARS names. */
        oc = json_pack("{s:s, s:{s:s, s:f, s:f, s:f, s:f, s:b}}", "class_name", "LARS", "config", "name", "LARS",
                       "learning_rate", c->lr, "momentum", c->momentum, "weight_decay_rate", c->weight_decay,
                       "eeta", c->lars_eta, "nesterov", 0);
        break;
    }
    /* Keras's optimizers write clipnorm and global_clipnorm only when set; a decay elsewhere than AdamW and
     * LARS is Keras 3's weight_decay. */
    json_t *ocfg = json_object_get(oc, "config");
    if (ocfg && c->clipnorm > 0)
        json_object_set_new(ocfg, "clipnorm", json_real(c->clipnorm));
    if (ocfg && c->global_clipnorm > 0)
        json_object_set_new(ocfg, "global_clipnorm", json_real(c->global_clipnorm));
    if (ocfg && c->weight_decay > 0 && c->kind != OPTIM_ADAMW && c->kind != OPTIM_LARS)
        json_object_set_new(ocfg, "weight_decay", json_real(c->weight_decay));
    if (ocfg && accumulate > 1)
        json_object_set_new(ocfg, "gradient_accumulation_steps", json_integer((json_int_t)accumulate));
    /* Keras 2's string unless smoothed: then tf.keras's CategoricalCrossentropy with its label_smoothing. */
    if (label_smoothing > 0)
        loss = json_pack("{s:s, s:{s:s, s:s, s:b, s:f}}", "class_name", "CategoricalCrossentropy", "config",
                         "reduction", "auto", "name", "categorical_crossentropy", "from_logits", 0, "label_smoothing",
                         label_smoothing);
    else
        loss = json_string("categorical_crossentropy");
    json_t *root = json_pack("{s:o, s:o, s:[s], s:n, s:n}", "optimizer_config", oc, "loss", loss, "metrics",
                             "accuracy", "sample_weight_mode", "loss_weights");
    char *out = root ? json_dumps(root, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(root);
    return out;
}

/* Root attributes: what Keras's load_model reads first. training_config only with an optimizer: Keras
 * treats a file without it as an uncompiled model. */
static int write_root(struct writer *w, const struct model *m, const struct optim *opt,
                      const struct checkpoint_state *st)
{
    char *config = keras_config_from_model(m);
    char *training = opt ? training_config(&opt->conf, st ? st->label_smoothing : 0, st ? st->accumulate : 1) : NULL;
    int rc = -1;
    if (!config || (opt && !training)) {
        snprintf(w->why, sizeof w->why, "cannot describe the model as Keras JSON (out of memory?)");
        goto done;
    }
    /* Class Functional is what tf.keras 2.4 and later write and read; a Sequential is read by every Keras 2. */
    const char *version = m->functional ? KERAS_VERSION_FUNCTIONAL : KERAS_VERSION;
    if (put_string(w, w->file, "keras_version", version) || put_string(w, w->file, "backend", KERAS_BACKEND) ||
        put_string(w, w->file, "model_config", config) ||
        (training && put_string(w, w->file, "training_config", training)))
        goto done;
    rc = 0;
done:
    free(config);
    free(training);
    return rc;
}

/* /model_weights/NAME: weight_names ("NAME/kernel:0", ...) and the datasets NAME/NAME/kernel:0 ... */
static int write_layer(struct writer *w, hid_t weights, const struct layer_spec *s, const float *params)
{
    char names[LAYER_MAX_PARAMS][sizeof s->name + 32], ds[48];
    const char *ptrs[LAYER_MAX_PARAMS];
    hid_t g = new_group(w, weights, s->name), inner = H5I_INVALID_HID;
    int rc = -1;
    for (int p = 0; p < s->n_params; p++) {
        snprintf(names[p], sizeof names[p], "%s/%s:0", s->name, s->params[p].name);
        ptrs[p] = names[p];
    }
    if (g < 0 || put_names(w, g, "weight_names", ptrs, s->n_params))
        goto done;
    if (s->n_params > 0 && (inner = new_group(w, g, s->name)) < 0)
        goto done;
    for (int p = 0; p < s->n_params; p++) {
        const struct param_info *pi = &s->params[p];
        hsize_t dims[4];
        for (int d = 0; d < pi->rank; d++)
            dims[d] = (hsize_t)pi->dims[d];
        snprintf(ds, sizeof ds, "%s:0", pi->name);
        if (put_floats(w, inner, ds, pi->rank, dims, params + pi->offset))
            goto done;
    }
    rc = 0;
done:
    close_id(&inner, H5Gclose);
    close_id(&g, H5Gclose);
    return rc;
}

/* Every layer but the Input, in model order: Keras lists no InputLayer for a Sequential model built
 * without one, and load_model pairs the layers that have weights by this order. */
static int write_weights(struct writer *w, const struct net *net)
{
    const struct model *m = &net->model;
    const char *names[MODEL_MAX_LAYERS];
    hid_t g = new_group(w, w->file, "model_weights");
    int rc = -1;
    for (int i = 1; i < m->n_layers; i++)
        names[i - 1] = m->layers[i].name;
    if (g < 0 || put_names(w, g, "layer_names", names, m->n_layers - 1) ||
        put_string(w, g, "backend", KERAS_BACKEND) ||
        put_string(w, g, "keras_version", m->functional ? KERAS_VERSION_FUNCTIONAL : KERAS_VERSION))
        goto done;
    for (int i = 1; i < m->n_layers; i++)
        if (write_layer(w, g, &m->layers[i], net->params))
            goto done;
    rc = 0;
done:
    close_id(&g, H5Gclose);
    return rc;
}

/* The optimizer's name, the hyper-parameters of its kind (Keras names), iterations and its slots. */
static int write_optimizer(struct writer *w, hid_t g, const struct optim *opt)
{
    const struct optim_conf *c = &opt->conf;
    hsize_t dims[2] = {(hsize_t)opt->n_slots, (hsize_t)opt->n};
    int bad = put_string(w, g, "optimizer", optim_kind_name(c->kind)) || put_f64(w, g, "lr", c->lr);
    if (!bad && c->kind == OPTIM_SGD)
        bad = put_f64(w, g, "momentum", c->momentum) || put_i32(w, g, "nesterov", c->nesterov);
    if (!bad && c->kind == OPTIM_RMSPROP)
        bad = put_f64(w, g, "rho", c->rho);
    if (!bad && (c->kind == OPTIM_ADAM || c->kind == OPTIM_ADAMW))
        bad = put_f64(w, g, "beta_1", c->beta1) || put_f64(w, g, "beta_2", c->beta2);
    if (!bad && c->kind == OPTIM_LARS)
        bad = put_f64(w, g, "momentum", c->momentum) || put_f64(w, g, "lars_eta", c->lars_eta);
    if (!bad && c->kind != OPTIM_SGD && c->kind != OPTIM_LARS)
        bad = put_f64(w, g, "epsilon", c->eps);
    /* The recipe (issue 14); readers of older files take 0 for each. */
    if (!bad)
        bad = put_f64(w, g, "weight_decay", c->weight_decay) || put_f64(w, g, "clipnorm", c->clipnorm) ||
              put_f64(w, g, "global_clipnorm", c->global_clipnorm);
    if (!bad)
        bad = put_i64(w, g, "iterations", opt->iterations) || put_floats(w, g, "optimizer_slots", 2, dims, opt->slots);
    return bad ? -1 : 0;
}

static int write_state(struct writer *w, hid_t g, const struct checkpoint_state *st)
{
    uint64_t seed = st->seed;
    int bad = put_i64(w, g, "step", st->step) || put_i64(w, g, "epoch", st->epoch) ||
              put_i64(w, g, "epoch_step", st->epoch_step) ||
              put_scalar(w, g, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &seed) ||
              put_i64(w, g, "global_batch", st->global_batch) || put_i32(w, g, "world_size", st->world_size) ||
              put_f64(w, g, "best_val_loss", st->best_val_loss) ||
              put_f64(w, g, "epoch_loss_sum", st->epoch_loss_sum) ||
              put_f64(w, g, "epoch_correct", st->epoch_correct) || put_i64(w, g, "epoch_seen", st->epoch_seen) ||
              put_f64(w, g, "epoch_wall_s", st->epoch_wall_s);
    /* The recipe (issue 14). */
    if (!bad)
        bad = put_i64(w, g, "accumulate", st->accumulate < 1 ? 1 : st->accumulate) ||
              put_f64(w, g, "label_smoothing", st->label_smoothing);
    return bad ? -1 : 0;
}

/* A 1-D float64 attribute (n > 0). */
static int put_f64_array(struct writer *w, hid_t obj, const char *name, const double *v, size_t n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    int rc = space < 0 ? writer_fail(w) : put_attr(w, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space, v);
    close_id(&space, H5Sclose);
    return rc;
}

/* The schedule, the callbacks' configs (their Keras calls) and state, and EarlyStopping's best weights. */
static int write_schedule(struct writer *w, hid_t g, const struct checkpoint_state *st, size_t n_params)
{
    const struct sched_conf *s = &st->sched;
    const struct callbacks *c = &st->callbacks;
    char text[CALLBACKS_MAX * sizeof c->cb[0].text];
    double state[CALLBACKS_MAX * CALLBACK_STATE_FIELDS];
    callbacks_text(c, text, sizeof text);
    callbacks_get_state(c, state);
    int bad = put_string(w, g, "lr_schedule", sched_kind_name(s->kind)) || put_f64(w, g, "schedule_lr", s->lr) ||
              put_f64(w, g, "warmup_epochs", s->warmup_epochs) || put_f64(w, g, "min_lr", s->min_lr) ||
              put_f64(w, g, "step_factor", s->step_factor) || put_f64(w, g, "decay_rate", s->decay_rate) ||
              (s->n_boundaries > 0 && put_f64_array(w, g, "step_epochs", s->step_epochs, (size_t)s->n_boundaries)) ||
              put_i64(w, g, "schedule_epochs", st->sched_epochs) ||
              put_i64(w, g, "schedule_steps_per_epoch", st->sched_steps_per_epoch) ||
              put_string(w, g, "callbacks", text) ||
              (c->n > 0 && put_f64_array(w, g, "callback_state", state, (size_t)c->n * CALLBACK_STATE_FIELDS)) ||
              put_f64(w, g, "lr_factor", c->lr_factor) || put_i32(w, g, "stopped_early", c->stopped) ||
              put_i32(w, g, "restored_best_weights", c->restored);
    if (!bad && c->best_weights) {
        hsize_t dims[1] = {(hsize_t)n_params};
        bad = put_floats(w, g, "best_weights", 1, dims, c->best_weights);
    }
    return bad ? -1 : 0;
}

static int write_trainer(struct writer *w, const struct net *net, const struct optim *opt,
                         const struct checkpoint_state *st)
{
    hid_t g = new_group(w, w->file, "trainer");
    int bad = g < 0 || put_i32(w, g, "format_version", CHECKPOINT_FORMAT_VERSION) ||
              put_string(w, g, "model_text", net->model.text) || (st && write_state(w, g, st)) ||
              (opt && write_optimizer(w, g, opt)) ||
              (st && st->sched_steps_per_epoch > 0 && write_schedule(w, g, st, net->n_params)) ||
              (st && st->n_class_names > 0 && put_utf8_names(w, g, "class_names", st->class_names, st->n_class_names));
    close_id(&g, H5Gclose);
    return bad ? -1 : 0;
}

/* Fills the in-memory file. */
static int build(struct writer *w, const struct net *net, const struct optim *opt,
                 const struct checkpoint_state *st)
{
    if (write_root(w, &net->model, opt, st) || write_weights(w, net) || write_trainer(w, net, opt, st))
        return -1;
    return 0;
}

/* Written whole or not at all (h5file.h): built in memory, then a temporary file, fsync, rename. */
int checkpoint_write(const char *path, const struct net *net, const struct optim *opt,
                     const struct checkpoint_state *st, struct error *err)
{
    struct h5file_writer out;
    struct writer w = {.file = H5I_INVALID_HID};
    int rc;
    if (opt && opt->n != net->n_params)
        return error_set(err, ERR_INTERNAL, "%s: optimizer has %zu parameters, the network %zu", path, opt->n,
                         net->n_params);
    /* SPEC: nothing non-finite is ever written. The loop stops at a non-finite loss or gradient, but an update
     * can still overflow; this is the last check, and costs one pass over the slabs. */
    if (!optim_all_finite(net->params, net->n_params) ||
        (opt && !optim_all_finite(opt->slots, opt->n * (size_t)opt->n_slots)))
        return error_set(err, ERR_DIVERGED, "%s: not written: the weights are not finite (training diverged; try "
                                            "a lower --lr)", path);
    if ((rc = h5file_create(&out, path, (size_t)1 << 20, "checkpoint", err)))
        return rc;
    w.file = out.file;
    if (build(&w, net, opt, st)) {
        h5file_discard(&out);
        return error_set(err, ERR_IO, "%s: cannot write checkpoint: %s", path, w.why);
    }
    return h5file_commit(&out, err);
}
