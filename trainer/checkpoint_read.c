/* checkpoint_read.c: models, weights and training state read back from checkpoints or from full-model and
 * save_weights() files Keras wrote. */
#define _POSIX_C_SOURCE 200809L

#include "checkpoint.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_hdf5.h"
#include "h5file.h"

/* Strings read from an attribute (layer_names, weight_names). */
struct strlist {
    int n;
    char **v;
};

static void strlist_free(struct strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    *l = (struct strlist){0};
}

/* "(2, 2, 3, 16)", and "(16,)" as Python prints a 1-tuple. */
static void shape_text(char *buf, size_t size, int rank, const hsize_t *dims)
{
    size_t len = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < rank && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (len < size)
        snprintf(buf + len, size - len, rank == 1 ? ",)" : ")");
}

/* ---- opening, attributes --------------------------------------------------------------------------------- */

static int has_link(hid_t obj, const char *name)
{
    return H5Lexists(obj, name, H5P_DEFAULT) > 0;
}

/* A scalar numeric attribute, converted by HDF5 to the memory type; -1 when absent or not numeric. */
static int get_scalar(hid_t obj, const char *name, hid_t mtype, void *out)
{
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t type = a < 0 ? H5I_INVALID_HID : H5Aget_type(a), space = a < 0 ? H5I_INVALID_HID : H5Aget_space(a);
    H5T_class_t cls = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
    int rc = -1;
    if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Sget_simple_extent_npoints(space) == 1 &&
        H5Aread(a, mtype, out) >= 0)
        rc = 0;
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    close_id(&a, H5Aclose);
    return rc;
}

/* A scalar string attribute, variable or fixed length (h5py writes either), as a malloc'd C string; NULL
 * when absent or not a string. Read with the file's own type: HDF5 converts no character sets. */
static char *get_string(hid_t obj, const char *name)
{
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t type = a < 0 ? H5I_INVALID_HID : H5Aget_type(a), space = a < 0 ? H5I_INVALID_HID : H5Aget_space(a);
    char *out = NULL, *vlen = NULL;
    if (type < 0 || H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1)
        goto done;
    if (H5Tis_variable_str(type) > 0) {
        if (H5Aread(a, type, &vlen) >= 0 && vlen)
            out = strdup(vlen);
        if (vlen)
            H5free_memory(vlen);
    } else {
        size_t size = H5Tget_size(type);
        out = calloc(size + 1, 1);
        if (out && H5Aread(a, type, out) < 0) {
            free(out);
            out = NULL;
        }
    }
done:
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    close_id(&a, H5Aclose);
    return out;
}

/* Appends the n strings of a string array attribute (fixed or variable length) to l. */
static int read_strings(hid_t a, hid_t type, hid_t space, int n, struct strlist *l)
{
    size_t size = H5Tget_size(type);
    int vlen = H5Tis_variable_str(type) > 0, rc = -1;
    char *buf = calloc((size_t)n, vlen ? sizeof(char *) : size);
    char **v = realloc(l->v, sizeof *v * (size_t)(l->n + n));
    if (v)
        l->v = v;
    if (!buf || !v || H5Aread(a, type, buf) < 0)
        goto done;
    for (int i = 0; i < n; i++) {
        const char *s = vlen ? ((char **)buf)[i] : buf + (size_t)i * size;
        if (!(l->v[l->n] = vlen ? strdup(s ? s : "") : strndup(s, size)))
            goto done;
        l->n++;
    }
    rc = 0;
done:
    if (buf && vlen)
        H5Dvlen_reclaim(type, space, H5P_DEFAULT, buf);
    free(buf);
    return rc;
}

/* One attribute holding a list of names; an empty array of any type (Keras's empty weight_names) is an
 * empty list. */
static int get_names_one(hid_t obj, const char *name, struct strlist *l)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t type = a < 0 ? H5I_INVALID_HID : H5Aget_type(a), space = a < 0 ? H5I_INVALID_HID : H5Aget_space(a);
    hssize_t n = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    int rc = -1;
    if (n == 0)
        rc = 0;
    else if (n > 0 && n < 1000000 && type >= 0 && H5Tget_class(type) == H5T_STRING)
        rc = read_strings(a, type, space, (int)n, l);
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    close_id(&a, H5Aclose);
    return rc;
}

/* A list of names, also in the form Keras uses when it would not fit one 64 KiB attribute: NAME0, NAME1 ...
 * -1 when absent or unreadable. */
static int get_names(hid_t obj, const char *name, struct strlist *l)
{
    char part[64];
    *l = (struct strlist){0};
    if (H5Aexists(obj, name) > 0) {
        if (get_names_one(obj, name, l) == 0)
            return 0;
        strlist_free(l);
        return -1;
    }
    for (int i = 0;; i++) {
        snprintf(part, sizeof part, "%s%d", name, i);
        if (H5Aexists(obj, part) <= 0)
            return i > 0 ? 0 : -1;
        if (get_names_one(obj, part, l)) {
            strlist_free(l);
            return -1;
        }
    }
}

/* /trainer/format_version, when present, must be one this trainer knows. */
static int check_version(hid_t file, const char *path, struct error *err)
{
    int64_t v;
    hid_t g = has_link(file, "trainer") ? H5Gopen2(file, "trainer", H5P_DEFAULT) : H5I_INVALID_HID;
    int rc = ERR_OK;
    if (g < 0 || H5Aexists(g, "format_version") <= 0)
        goto done;
    if (get_scalar(g, "format_version", H5T_NATIVE_INT64, &v) || v < 1)
        rc = error_set(err, ERR_INPUT, "%s: /trainer/format_version is not a valid version", path);
    else if (v > CHECKPOINT_FORMAT_VERSION)
        rc = error_set(err, ERR_INPUT,
                       "%s: checkpoint format version %lld is newer than this trainer supports (%d)", path,
                       (long long)v, CHECKPOINT_FORMAT_VERSION);
done:
    close_id(&g, H5Gclose);
    return rc;
}

static int open_checked(const char *path, hid_t *file, struct error *err)
{
    int rc = h5file_open_read(path, file, err);
    if (rc == ERR_OK && (rc = check_version(*file, path, err)))
        close_id(file, H5Fclose);
    return rc;
}

/* ---- the model ------------------------------------------------------------------------------------------ */

/* The model text carries no layer names, so a model parsed from it is named conv2d_1 ...; when the file's
 * model_config describes the same layers, its names are kept, so that a model first read from a Keras
 * file keeps its names across checkpoints and resumes. */
static void adopt_keras_names(struct model *m, hid_t file, const char *path)
{
    char *json = get_string(file, "model_config");
    struct model *k = json ? malloc(sizeof *k) : NULL;
    struct error ignored;
    if (k && keras_config_to_model(json, path, k, &ignored) == ERR_OK && k->n_layers == m->n_layers) {
        int same = 1;
        for (int i = 0; i < m->n_layers && same; i++)
            same = k->layers[i].ops == m->layers[i].ops;
        for (int i = 0; i < m->n_layers && same; i++)
            memcpy(m->layers[i].name, k->layers[i].name, sizeof m->layers[i].name);
    }
    free(k);
    free(json);
}

static int model_from_text(hid_t file, const char *path, struct model *m, struct error *err)
{
    hid_t g = H5Gopen2(file, "trainer", H5P_DEFAULT);
    char *text = g < 0 ? NULL : get_string(g, "model_text");
    int rc;
    close_id(&g, H5Gclose);
    if (!text)
        return error_set(err, ERR_INPUT, "%s: /trainer/model_text cannot be read", path);
    rc = model_parse(m, text, path, err);
    free(text);
    if (rc == ERR_OK)
        adopt_keras_names(m, file, path);
    return rc;
}

static int model_from_keras(hid_t file, const char *path, struct model *m, struct error *err)
{
    char *json = get_string(file, "model_config");
    int rc;
    if (!json)
        return error_set(err, ERR_INPUT, "%s: model_config is not a string", path);
    rc = keras_config_to_model(json, path, m, err);
    free(json);
    return rc;
}

int checkpoint_read_model(const char *path, struct model *m, struct error *err)
{
    hid_t file;
    int rc = open_checked(path, &file, err);
    if (rc)
        return rc;
    hid_t g = has_link(file, "trainer") ? H5Gopen2(file, "trainer", H5P_DEFAULT) : H5I_INVALID_HID;
    int text = g >= 0 && H5Aexists(g, "model_text") > 0;
    close_id(&g, H5Gclose);
    if (text)
        rc = model_from_text(file, path, m, err);
    else if (H5Aexists(file, "model_config") > 0)
        rc = model_from_keras(file, path, m, err);
    else
        rc = error_set(err, ERR_INPUT, "%s: no model in this file (neither /trainer/model_text nor a Keras "
                                       "model_config): a weights-only or dataset file?", path);
    close_id(&file, H5Fclose);
    return rc;
}

/* ---- the weights ---------------------------------------------------------------------------------------- */

/* A layer of the file that holds weights: its name and its weight_names (paths below its group). */
struct file_layer {
    char *name;
    struct strlist weights;
};

struct weights_file {
    hid_t file, group; /* /model_weights, or the root of a save_weights() file */
    int n;
    struct file_layer *layers;
};

static void weights_file_close(struct weights_file *wf)
{
    for (int i = 0; i < wf->n; i++) {
        free(wf->layers[i].name);
        strlist_free(&wf->layers[i].weights);
    }
    free(wf->layers);
    close_id(&wf->group, H5Gclose);
    close_id(&wf->file, H5Fclose);
}

/* Theano stored convolution kernels flipped; every other Keras backend stores them as TensorFlow does. */
static int check_backend(hid_t g, const char *path, struct error *err)
{
    char *backend = get_string(g, "backend");
    int rc = ERR_OK;
    if (backend && strcmp(backend, "theano") == 0)
        rc = error_set(err, ERR_INPUT, "%s: weights saved by the Theano backend are not supported", path);
    free(backend);
    return rc;
}

/* The layers that hold weights, in file order: Keras's load_model pairs them by order with the model's
 * layers that have weights, whatever their names, and so does this. */
static int list_weight_layers(struct weights_file *wf, const struct strlist *names, const char *path,
                              struct error *err)
{
    if (!(wf->layers = calloc((size_t)names->n + 1, sizeof *wf->layers)))
        return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
    for (int i = 0; i < names->n; i++) {
        struct file_layer *fl = &wf->layers[wf->n];
        hid_t g = has_link(wf->group, names->v[i]) ? H5Gopen2(wf->group, names->v[i], H5P_DEFAULT) : -1;
        int bad = g < 0 || get_names(g, "weight_names", &fl->weights) != 0;
        close_id(&g, H5Gclose);
        if (bad)
            return error_set(err, ERR_INPUT, "%s: layer '%s' of layer_names has no readable weight_names", path,
                             names->v[i]);
        if (fl->weights.n == 0)
            continue;
        if (!(fl->name = strdup(names->v[i])))
            return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
        wf->n++;
    }
    return ERR_OK;
}

static int weights_file_open(struct weights_file *wf, const char *path, struct error *err)
{
    struct strlist names = {0};
    *wf = (struct weights_file){.file = H5I_INVALID_HID, .group = H5I_INVALID_HID};
    int rc = open_checked(path, &wf->file, err);
    if (rc)
        return rc;
    /* A full-model file keeps them in /model_weights, a save_weights() file at the root. */
    wf->group = H5Gopen2(wf->file, has_link(wf->file, "model_weights") ? "model_weights" : "/", H5P_DEFAULT);
    if (wf->group < 0 || get_names(wf->group, "layer_names", &names) != 0)
        rc = error_set(err, ERR_INPUT, "%s: no weights in this file (no /model_weights with layer_names)", path);
    if (!rc)
        rc = check_backend(wf->group, path, err);
    if (!rc)
        rc = list_weight_layers(wf, &names, path, err);
    strlist_free(&names);
    return rc;
}

/* Reads one weight into dst after checking its shape against the model's. */
static int load_weight(hid_t g, const char *wname, const struct param_info *pi, float *dst, const char *path,
                       struct error *err)
{
    hid_t d = has_link(g, wname) ? H5Dopen2(g, wname, H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t space = d < 0 ? H5I_INVALID_HID : H5Dget_space(d), type = d < 0 ? H5I_INVALID_HID : H5Dget_type(d);
    hsize_t dims[H5S_MAX_RANK], want[4];
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space), rc = ERR_OK;
    char got_s[160], want_s[160];
    for (int i = 0; i < pi->rank; i++)
        want[i] = (hsize_t)pi->dims[i];
    if (rank < 0 || type < 0) {
        rc = error_set(err, ERR_INPUT, "%s: weight %s is missing or unreadable", path, wname);
        goto done;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    int same = rank == pi->rank;
    for (int i = 0; i < rank && same; i++)
        same = dims[i] == want[i];
    if (!same) {
        shape_text(got_s, sizeof got_s, rank, dims);
        shape_text(want_s, sizeof want_s, pi->rank, want);
        rc = error_set(err, ERR_INPUT, "%s: %s has shape %s, the model expects %s", path, wname, got_s, want_s);
    } else if (H5Tget_class(type) != H5T_FLOAT) {
        rc = error_set(err, ERR_INPUT, "%s: %s does not hold floating-point numbers", path, wname);
    } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        rc = error_set(err, ERR_INPUT, "%s: %s cannot be read (damaged file)", path, wname);
    }
done:
    close_id(&type, H5Tclose);
    close_id(&space, H5Sclose);
    close_id(&d, H5Dclose);
    return rc;
}

/* The weights of one model layer from the file's layer fl (group fl->name, weight_names relative to it). */
static int load_layer(const struct weights_file *wf, const struct file_layer *fl, const struct layer_spec *s,
                      float *slab, const char *path, struct error *err)
{
    if (fl->weights.n != s->n_params)
        return error_set(err, ERR_INPUT, "%s: layer %s has %d weights, the model's %s has %d", path, fl->name,
                         fl->weights.n, s->name, s->n_params);
    hid_t g = H5Gopen2(wf->group, fl->name, H5P_DEFAULT);
    int rc = ERR_OK;
    for (int p = 0; p < s->n_params && rc == ERR_OK; p++)
        rc = load_weight(g, fl->weights.v[p], &s->params[p], slab + s->params[p].offset, path, err);
    close_id(&g, H5Gclose);
    return rc;
}

static const struct file_layer *file_layer_named(const struct weights_file *wf, const char *name)
{
    for (int i = 0; i < wf->n; i++)
        if (strcmp(wf->layers[i].name, name) == 0)
            return &wf->layers[i];
    return NULL;
}

static int count_weight_layers(const struct model *m)
{
    int n = 0;
    for (int i = 1; i < m->n_layers; i++)
        n += m->layers[i].n_params > 0;
    return n;
}

int checkpoint_read_weights(const char *path, struct net *net, struct error *err)
{
    struct weights_file wf;
    const struct model *m = &net->model;
    /* Into a copy first: a file that does not fit leaves the network's weights as they were. */
    float *slab = malloc(sizeof *slab * (net->n_params + 1));
    int rc = weights_file_open(&wf, path, err), k = 0;
    if (rc)
        goto fail;
    if (!slab) {
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory", path);
        goto fail;
    }
    if (wf.n != count_weight_layers(m)) {
        rc = error_set(err, ERR_INPUT, "%s: the file has weights for %d layers, the model has %d layers with "
                                       "weights", path, wf.n, count_weight_layers(m));
        goto fail;
    }
    /* By name when every layer with weights finds its own (a graph's layers may be listed in another
     * topological order than the file's), else by order as Keras's load_model pairs them. */
    int by_name = 1;
    for (int i = 1; i < m->n_layers && by_name; i++)
        by_name = m->layers[i].n_params == 0 || file_layer_named(&wf, m->layers[i].name) != NULL;
    for (int i = 1; i < m->n_layers; i++) {
        if (m->layers[i].n_params == 0)
            continue;
        const struct file_layer *fl = by_name ? file_layer_named(&wf, m->layers[i].name) : &wf.layers[k++];
        if ((rc = load_layer(&wf, fl, &m->layers[i], slab, path, err)))
            goto fail;
    }
    memcpy(net->params, slab, sizeof *slab * net->n_params);
fail:
    weights_file_close(&wf);
    free(slab);
    return rc;
}

/* ---- the training state --------------------------------------------------------------------------------- */

/* An attribute a newer writer adds: *out keeps its value when absent; -1 when present but not a number. */
static int get_optional(hid_t obj, const char *name, hid_t mtype, void *out)
{
    return H5Aexists(obj, name) > 0 ? get_scalar(obj, name, mtype, out) : 0;
}

/* The optimizer and its hyper-parameters as written by write_optimizer; Keras defaults for what a kind
 * does not store. */
static int read_optim_conf(hid_t g, struct optim_conf *c, const char *path, struct error *err)
{
    char *name = get_string(g, "optimizer");
    int kind = name ? optim_kind_from_name(name) : -1;
    int32_t nesterov = 0;
    free(name);
    if (kind < 0)
        return error_set(err, ERR_INPUT, "%s: /trainer/optimizer is missing or unknown", path);
    optim_defaults(c, (enum optim_kind)kind);
    int bad = get_scalar(g, "lr", H5T_NATIVE_DOUBLE, &c->lr);
    if (kind == OPTIM_SGD)
        bad = bad || get_scalar(g, "momentum", H5T_NATIVE_DOUBLE, &c->momentum) ||
              get_scalar(g, "nesterov", H5T_NATIVE_INT32, &nesterov);
    if (kind == OPTIM_RMSPROP)
        bad = bad || get_scalar(g, "rho", H5T_NATIVE_DOUBLE, &c->rho);
    if (kind == OPTIM_ADAM || kind == OPTIM_ADAMW)
        bad = bad || get_scalar(g, "beta_1", H5T_NATIVE_DOUBLE, &c->beta1) ||
              get_scalar(g, "beta_2", H5T_NATIVE_DOUBLE, &c->beta2);
    if (kind == OPTIM_LARS)
        bad = bad || get_scalar(g, "momentum", H5T_NATIVE_DOUBLE, &c->momentum) ||
              get_scalar(g, "lars_eta", H5T_NATIVE_DOUBLE, &c->lars_eta);
    if (kind != OPTIM_SGD && kind != OPTIM_LARS)
        bad = bad || get_scalar(g, "epsilon", H5T_NATIVE_DOUBLE, &c->eps);
    /* The recipe (issue 14): absent from older files, which had none of it. */
    c->weight_decay = 0;
    bad = bad || get_optional(g, "weight_decay", H5T_NATIVE_DOUBLE, &c->weight_decay) ||
          get_optional(g, "clipnorm", H5T_NATIVE_DOUBLE, &c->clipnorm) ||
          get_optional(g, "global_clipnorm", H5T_NATIVE_DOUBLE, &c->global_clipnorm);
    c->nesterov = nesterov != 0;
    if (bad)
        return error_set(err, ERR_INPUT, "%s: /trainer: the %s hyper-parameters are missing or not numbers", path,
                         optim_kind_name(c->kind));
    return ERR_OK;
}

/* A numeric attribute of exactly n elements into out; -1 when absent or of another size. */
static int get_f64_array(hid_t obj, const char *name, double *out, size_t n)
{
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t type = a < 0 ? H5I_INVALID_HID : H5Aget_type(a), space = a < 0 ? H5I_INVALID_HID : H5Aget_space(a);
    H5T_class_t cls = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
    int rc = -1;
    if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && H5Sget_simple_extent_npoints(space) == (hssize_t)n &&
        H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0)
        rc = 0;
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    close_id(&a, H5Aclose);
    return rc;
}

/* The schedule's numbers: finite, and in the ranges the command line allows. */
static int schedule_valid(const struct checkpoint_state *st)
{
    const struct sched_conf *s = &st->sched;
    /* The command line's bounds (epochs up to 1e6, steps per epoch below 2^40), so that no product or
     * conversion to steps can overflow. */
    int ok = isfinite(s->lr) && s->lr >= 0 && s->lr <= 1e6 && s->warmup_epochs >= 0 && s->warmup_epochs <= 1e6 &&
             s->min_lr >= 0 && s->min_lr <= 1e6 && s->step_factor > 0 && s->step_factor <= 1e6 &&
             s->decay_rate > 0 && s->decay_rate <= 1e6 && st->sched_epochs >= 1 && st->sched_epochs <= 1000000 &&
             st->sched_steps_per_epoch >= 1 && st->sched_steps_per_epoch < (int64_t)1 << 40 &&
             st->callbacks.lr_factor >= 0 && st->callbacks.lr_factor <= 1;
    for (int i = 0; i < s->n_boundaries && ok; i++)
        ok = s->step_epochs[i] > 0 && s->step_epochs[i] <= 1e6 && (i == 0 || s->step_epochs[i] > s->step_epochs[i - 1]);
    return ok;
}

/* The schedule and the callbacks (write_schedule); defaults for a checkpoint written before them. */
static int read_schedule(hid_t g, struct checkpoint_state *st, const char *path, struct error *err)
{
    struct sched_conf *s = &st->sched;
    sched_defaults(s);
    s->lr = st->optim.lr;
    callbacks_init(&st->callbacks);
    char *kind = get_string(g, "lr_schedule");
    if (!kind)
        return ERR_OK;
    int k = sched_kind_from_name(kind);
    free(kind);
    int32_t stopped = 0, restored = 0;
    hid_t a = H5Aexists(g, "step_epochs") > 0 ? H5Aopen(g, "step_epochs", H5P_DEFAULT) : H5I_INVALID_HID;
    hid_t space = a < 0 ? H5I_INVALID_HID : H5Aget_space(a);
    hssize_t nb = space < 0 ? 0 : H5Sget_simple_extent_npoints(space);
    close_id(&space, H5Sclose);
    close_id(&a, H5Aclose);
    s->kind = k < 0 ? SCHED_CONSTANT : (enum sched_kind)k;
    s->n_boundaries = nb > 0 && nb <= SCHED_MAX_BOUNDARIES ? (int)nb : 0;
    int bad = k < 0 || nb < 0 || nb > SCHED_MAX_BOUNDARIES || get_scalar(g, "schedule_lr", H5T_NATIVE_DOUBLE, &s->lr) ||
              get_scalar(g, "warmup_epochs", H5T_NATIVE_DOUBLE, &s->warmup_epochs) ||
              get_scalar(g, "min_lr", H5T_NATIVE_DOUBLE, &s->min_lr) ||
              get_scalar(g, "step_factor", H5T_NATIVE_DOUBLE, &s->step_factor) ||
              get_scalar(g, "decay_rate", H5T_NATIVE_DOUBLE, &s->decay_rate) ||
              (nb > 0 && get_f64_array(g, "step_epochs", s->step_epochs, (size_t)nb)) ||
              get_scalar(g, "schedule_epochs", H5T_NATIVE_INT64, &st->sched_epochs) ||
              get_scalar(g, "schedule_steps_per_epoch", H5T_NATIVE_INT64, &st->sched_steps_per_epoch) ||
              get_scalar(g, "lr_factor", H5T_NATIVE_DOUBLE, &st->callbacks.lr_factor) ||
              get_scalar(g, "stopped_early", H5T_NATIVE_INT32, &stopped) ||
              get_scalar(g, "restored_best_weights", H5T_NATIVE_INT32, &restored);
    if (bad || !schedule_valid(st))
        return error_set(err, ERR_INPUT, "%s: /trainer: the learning-rate schedule is missing parts or invalid "
                                         "(damaged file)", path);
    char *text = get_string(g, "callbacks");
    double state[CALLBACKS_MAX * CALLBACK_STATE_FIELDS];
    double factor = st->callbacks.lr_factor;
    struct error why = {0};
    int rc = text ? callbacks_from_text(&st->callbacks, text, &why) : ERR_INPUT;
    free(text);
    if (rc != ERR_OK)
        return error_set(err, ERR_INPUT, "%s: /trainer/callbacks cannot be read: %s", path,
                         why.msg[0] ? why.msg : "missing");
    if (st->callbacks.n > 0 &&
        get_f64_array(g, "callback_state", state, (size_t)st->callbacks.n * CALLBACK_STATE_FIELDS))
        return error_set(err, ERR_INPUT, "%s: /trainer/callback_state is missing or of the wrong size", path);
    if (callbacks_set_state(&st->callbacks, state))
        return error_set(err, ERR_INPUT, "%s: /trainer/callback_state holds invalid counters (damaged file)", path);
    st->callbacks.lr_factor = factor;
    st->callbacks.stopped = stopped != 0;
    st->callbacks.restored = restored != 0;
    return ERR_OK;
}

static int read_state(hid_t g, struct checkpoint_state *st, const char *path, struct error *err)
{
    static const char *const keys[] = {"step", "epoch", "epoch_step", "global_batch", "epoch_seen"};
    int64_t *dst[] = {&st->step, &st->epoch, &st->epoch_step, &st->global_batch, &st->epoch_seen};
    static const char *const fkeys[] = {"best_val_loss", "epoch_loss_sum", "epoch_correct", "epoch_wall_s"};
    double *fdst[] = {&st->best_val_loss, &st->epoch_loss_sum, &st->epoch_correct, &st->epoch_wall_s};
    int64_t world;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (get_scalar(g, keys[i], H5T_NATIVE_INT64, dst[i]))
            return error_set(err, ERR_INPUT, "%s: /trainer/%s is missing or not a number", path, keys[i]);
    for (size_t i = 0; i < sizeof fkeys / sizeof fkeys[0]; i++)
        if (get_scalar(g, fkeys[i], H5T_NATIVE_DOUBLE, fdst[i]))
            return error_set(err, ERR_INPUT, "%s: /trainer/%s is missing or not a number", path, fkeys[i]);
    if (st->step < 0 || st->epoch < 0 || st->epoch_step < 0 || st->global_batch < 1 || st->epoch_seen < 0)
        return error_set(err, ERR_INPUT, "%s: /trainer: the training position is invalid (damaged file)", path);
    if (get_scalar(g, "seed", H5T_NATIVE_UINT64, &st->seed))
        return error_set(err, ERR_INPUT, "%s: /trainer/seed is missing or not a number", path);
    if (get_scalar(g, "world_size", H5T_NATIVE_INT64, &world) || world < 1 || world > 1 << 24)
        return error_set(err, ERR_INPUT, "%s: /trainer/world_size is missing or invalid", path);
    st->world_size = (int)world;
    st->accumulate = 1;
    st->label_smoothing = 0;
    if (get_optional(g, "accumulate", H5T_NATIVE_INT64, &st->accumulate) ||
        get_optional(g, "label_smoothing", H5T_NATIVE_DOUBLE, &st->label_smoothing) || st->accumulate < 1 ||
        st->accumulate > 65536 || !(st->label_smoothing >= 0 && st->label_smoothing <= 1))
        return error_set(err, ERR_INPUT, "%s: /trainer: accumulate or label_smoothing is invalid (damaged file)",
                         path);
    int rc = read_optim_conf(g, &st->optim, path, err);
    return rc ? rc : read_schedule(g, st, path, err);
}

/* optimizer_slots must be (n_slots, n) of opt: the same optimizer on the same model. */
static int check_slots(hid_t d, const struct optim *opt, const char *path, struct error *err)
{
    hid_t space = H5Dget_space(d);
    hsize_t dims[H5S_MAX_RANK], want[2] = {(hsize_t)opt->n_slots, (hsize_t)opt->n};
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space), rc = ERR_OK;
    char got_s[96], want_s[96];
    if (rank >= 0)
        H5Sget_simple_extent_dims(space, dims, NULL);
    if (rank != 2 || dims[0] != want[0] || dims[1] != want[1]) {
        shape_text(got_s, sizeof got_s, rank < 0 ? 0 : rank, dims);
        shape_text(want_s, sizeof want_s, 2, want);
        rc = error_set(err, ERR_INPUT, "%s: /trainer/optimizer_slots has shape %s, the optimizer expects %s",
                       path, got_s, want_s);
    }
    close_id(&space, H5Sclose);
    return rc;
}

static int read_optimizer(hid_t g, struct optim *opt, const char *path, struct error *err)
{
    char *name = get_string(g, "optimizer");
    int64_t iterations = 0;
    hid_t d = H5I_INVALID_HID;
    int rc = ERR_OK;
    if (!name || get_scalar(g, "iterations", H5T_NATIVE_INT64, &iterations) || !has_link(g, "optimizer_slots"))
        rc = error_set(err, ERR_INPUT, "%s: no optimizer state in /trainer (written without an optimizer)", path);
    else if (optim_kind_from_name(name) != (int)opt->conf.kind)
        rc = error_set(err, ERR_INPUT, "%s: the checkpoint's optimizer is %s, not %s", path, name,
                       optim_kind_name(opt->conf.kind));
    else if ((d = H5Dopen2(g, "optimizer_slots", H5P_DEFAULT)) < 0)
        rc = error_set(err, ERR_INPUT, "%s: /trainer/optimizer_slots cannot be opened (damaged file)", path);
    else if ((rc = check_slots(d, opt, path, err)) == ERR_OK &&
             H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, opt->slots) < 0)
        rc = error_set(err, ERR_INPUT, "%s: /trainer/optimizer_slots cannot be read (damaged file)", path);
    if (rc == ERR_OK)
        opt->iterations = iterations;
    close_id(&d, H5Dclose);
    free(name);
    return rc;
}

int checkpoint_read_state(const char *path, struct optim *opt, struct checkpoint_state *st, struct error *err)
{
    struct checkpoint_state got = {0};
    hid_t file, g = H5I_INVALID_HID;
    int rc = open_checked(path, &file, err);
    if (rc)
        return rc;
    if (!has_link(file, "trainer") || (g = H5Gopen2(file, "trainer", H5P_DEFAULT)) < 0) {
        rc = error_set(err, ERR_INPUT, "%s: no training state (/trainer): not a checkpoint written by trainer",
                       path);
        goto done;
    }
    /* The scalars first: the slots are the only thing written into the caller's objects before success. */
    if ((rc = read_state(g, &got, path, err)) || (opt && (rc = read_optimizer(g, opt, path, err))))
        goto done;
    if (st)
        *st = got;
done:
    close_id(&g, H5Gclose);
    close_id(&file, H5Fclose);
    return rc;
}

int checkpoint_read_best_weights(const char *path, float *dst, size_t n, struct error *err)
{
    hid_t file, d = H5I_INVALID_HID, space = H5I_INVALID_HID;
    int rc = open_checked(path, &file, err);
    if (rc)
        return rc;
    if (has_link(file, "trainer/best_weights"))
        d = H5Dopen2(file, "trainer/best_weights", H5P_DEFAULT);
    space = d < 0 ? H5I_INVALID_HID : H5Dget_space(d);
    if (d < 0 || space < 0 || H5Sget_simple_extent_npoints(space) != (hssize_t)n)
        rc = error_set(err, ERR_INPUT, "%s: /trainer/best_weights is missing or not of the model's %zu parameters",
                       path, n);
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        rc = error_set(err, ERR_INPUT, "%s: /trainer/best_weights cannot be read (damaged file)", path);
    close_id(&space, H5Sclose);
    close_id(&d, H5Dclose);
    close_id(&file, H5Fclose);
    return rc;
}

/* ---- class names ---------------------------------------------------------------------------------------- */

int checkpoint_read_class_names(const char *path, char ***names, int *n, struct error *err)
{
    struct strlist l = {0};
    hid_t file, g = H5I_INVALID_HID;
    int rc = open_checked(path, &file, err);

    *names = NULL;
    *n = 0;
    if (rc)
        return rc;
    if (has_link(file, "trainer") && (g = H5Gopen2(file, "trainer", H5P_DEFAULT)) >= 0 &&
        H5Aexists(g, "class_names") > 0) {
        if (get_names(g, "class_names", &l))
            rc = error_set(err, ERR_INPUT, "%s: /trainer attribute class_names is not a list of strings", path);
        *names = l.v;
        *n = l.n;
    }
    close_id(&g, H5Gclose);
    close_id(&file, H5Fclose);
    return rc;
}

void checkpoint_free_class_names(char **names, int n)
{
    struct strlist l = {n, names};
    strlist_free(&l);
}
