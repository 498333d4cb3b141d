/* checkpoint.c: checkpoints as Keras 2 full-model HDF5 files plus /trainer, written atomically; models,
 * weights and training state read back from them or from files Keras wrote. */
#define _POSIX_C_SOURCE 200809L

#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the files claim to be: the Keras whose layout they follow (2.1.6 reads and writes this layout). */
#define KERAS_VERSION "2.1.6"
#define KERAS_BACKEND "tensorflow"

/* Strings read from an attribute (layer_names, weight_names). */
struct strlist {
    int n;
    char **v;
};

/* HDF5 prints its error stack to stderr by default; the user must see only our one line. */
static void hdf5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void close_id(hid_t *id, herr_t (*close)(hid_t))
{
    if (*id >= 0)
        close(*id);
    *id = H5I_INVALID_HID;
}

/* Still locks, but does not fail on file systems (NFS, Lustre) where locking is disabled. */
static hid_t file_access_list(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    if (fapl >= 0)
        H5Pset_file_locking(fapl, 1, 1);
#endif
    return fapl;
}

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

/* ==== writing ============================================================================================ */

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
static char *training_config(const struct optim_conf *c)
{
    json_t *oc = NULL;
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
    }
    json_t *root = json_pack("{s:o, s:s, s:[s], s:n, s:n}", "optimizer_config", oc, "loss",
                             "categorical_crossentropy", "metrics", "accuracy", "sample_weight_mode",
                             "loss_weights");
    char *out = root ? json_dumps(root, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(root);
    return out;
}

/* Root attributes: what Keras's load_model reads first. training_config only with an optimizer: Keras
 * treats a file without it as an uncompiled model. */
static int write_root(struct writer *w, const struct model *m, const struct optim *opt)
{
    char *config = keras_config_from_model(m);
    char *training = opt ? training_config(&opt->conf) : NULL;
    int rc = -1;
    if (!config || (opt && !training)) {
        snprintf(w->why, sizeof w->why, "cannot describe the model as Keras JSON (out of memory?)");
        goto done;
    }
    if (put_string(w, w->file, "keras_version", KERAS_VERSION) || put_string(w, w->file, "backend", KERAS_BACKEND) ||
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
        put_string(w, g, "backend", KERAS_BACKEND) || put_string(w, g, "keras_version", KERAS_VERSION))
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
    if (!bad && c->kind == OPTIM_ADAM)
        bad = put_f64(w, g, "beta_1", c->beta1) || put_f64(w, g, "beta_2", c->beta2);
    if (!bad && c->kind != OPTIM_SGD)
        bad = put_f64(w, g, "epsilon", c->eps);
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
              put_f64(w, g, "best_val_loss", st->best_val_loss);
    return bad ? -1 : 0;
}

static int write_trainer(struct writer *w, const struct net *net, const struct optim *opt,
                         const struct checkpoint_state *st)
{
    hid_t g = new_group(w, w->file, "trainer");
    int bad = g < 0 || put_i32(w, g, "format_version", CHECKPOINT_FORMAT_VERSION) ||
              put_string(w, g, "model_text", net->model.text) || (st && write_state(w, g, st)) ||
              (opt && write_optimizer(w, g, opt));
    close_id(&g, H5Gclose);
    return bad ? -1 : 0;
}

/* The file is built in memory (HDF5's core driver, no backing store) and written out with plain write()
 * calls: a full disk then fails a write() with its errno, never HDF5's close, which leaves the file open
 * and crashes the library at exit when the disk refuses its metadata. */
static int create_in_memory(struct writer *w, const char *name)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0 ||
        (w->file = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0)
        writer_fail(w);
    close_id(&fapl, H5Pclose);
    return w->file < 0 ? -1 : 0;
}

/* The finished file's bytes (malloc'd into *image); closes the in-memory file. */
static int take_image(struct writer *w, void **image, size_t *size)
{
    ssize_t n = -1;
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0 || (n = H5Fget_file_image(w->file, NULL, 0)) <= 0)
        return writer_fail(w);
    if (!(*image = malloc((size_t)n))) {
        snprintf(w->why, sizeof w->why, "out of memory for %zd bytes", n);
        return -1;
    }
    *size = (size_t)n;
    if (H5Fget_file_image(w->file, *image, (size_t)n) != n || H5Fclose(w->file) < 0)
        return writer_fail(w);
    w->file = H5I_INVALID_HID;
    return 0;
}

/* All of buf, then fsync: without it a crash after rename() could leave PATH naming a file whose blocks
 * never arrived. */
static int write_all(struct writer *w, int fd, const char *buf, size_t size)
{
    while (size > 0) {
        ssize_t n = write(fd, buf, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(w->why, sizeof w->why, "%s", n < 0 ? strerror(errno) : "short write");
            return -1;
        }
        buf += n;
        size -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        snprintf(w->why, sizeof w->why, "%s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Makes the rename itself durable. Best effort: some file systems refuse fsync on a directory. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Builds the whole file into *image. */
static int build(struct writer *w, const char *tmp, const struct net *net, const struct optim *opt,
                 const struct checkpoint_state *st, void **image, size_t *size)
{
    if (create_in_memory(w, tmp) || write_root(w, &net->model, opt) || write_weights(w, net) ||
        write_trainer(w, net, opt, st) || take_image(w, image, size))
        return -1;
    return 0;
}

int checkpoint_write(const char *path, const struct net *net, const struct optim *opt,
                     const struct checkpoint_state *st, struct error *err)
{
    struct writer w = {.file = H5I_INVALID_HID};
    size_t len = strlen(path) + 32, size = 0;
    char *tmp = malloc(len);
    void *image = NULL;
    int fd = -1, created = 0;
    if (!tmp)
        return error_set(err, ERR_INTERNAL, "%s: out of memory", path);
    if (opt && opt->n != net->n_params) {
        free(tmp);
        return error_set(err, ERR_INTERNAL, "%s: optimizer has %zu parameters, the network %zu", path, opt->n,
                         net->n_params);
    }
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    hdf5_quiet();
    /* O_TRUNC, not O_EXCL: a temporary left by a killed run with the same pid (usual in containers) must
     * not block every later checkpoint. Opened first so that an unwritable directory fails fast. */
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666)) < 0) {
        snprintf(w.why, sizeof w.why, "%s", strerror(errno));
        goto fail;
    }
    created = 1;
    if (build(&w, tmp, net, opt, st, &image, &size) || write_all(&w, fd, image, size))
        goto fail;
    /* close() is checked too: NFS reports some write errors only there. */
    int closed = close(fd);
    fd = -1;
    if (closed != 0 || rename(tmp, path) != 0) {
        snprintf(w.why, sizeof w.why, "%s", strerror(errno));
        goto fail;
    }
    sync_parent_dir(path);
    free(image);
    free(tmp);
    return ERR_OK;
fail:
    close_id(&w.file, H5Fclose);
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    free(image);
    free(tmp);
    return error_set(err, ERR_IO, "%s: cannot write checkpoint: %s", path, w.why);
}

/* ==== reading ============================================================================================ */

/* Tells "no such file" and "not HDF5" apart, and catches damage HDF5 finds on opening. */
static int open_file(const char *path, hid_t *file, struct error *err)
{
    struct stat sb;
    *file = H5I_INVALID_HID;
    hdf5_quiet();
    if (stat(path, &sb) != 0)
        return error_set(err, errno == ENOENT || errno == ENOTDIR ? ERR_INPUT : ERR_IO, "%s: %s", path,
                         strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return error_set(err, ERR_INPUT, "%s: is a directory, not an HDF5 file", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return error_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
    if (H5Fis_hdf5(path) <= 0)
        return error_set(err, ERR_INPUT, "%s: not an HDF5 file", path);
    hid_t fapl = file_access_list();
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    close_id(&fapl, H5Pclose);
    /* The signature was there, so the rest is damaged: most often a copy cut short. */
    if (*file < 0)
        return error_set(err, ERR_INPUT, "%s: damaged or truncated HDF5 file", path);
    return ERR_OK;
}

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
    int rc = open_file(path, file, err);
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
    for (int i = 1; i < m->n_layers; i++)
        if (m->layers[i].n_params > 0 && (rc = load_layer(&wf, &wf.layers[k++], &m->layers[i], slab, path, err)))
            goto fail;
    memcpy(net->params, slab, sizeof *slab * net->n_params);
fail:
    weights_file_close(&wf);
    free(slab);
    return rc;
}

/* ---- the training state --------------------------------------------------------------------------------- */

static int read_state(hid_t g, struct checkpoint_state *st, const char *path, struct error *err)
{
    static const char *const keys[] = {"step", "epoch", "epoch_step", "global_batch"};
    int64_t *dst[] = {&st->step, &st->epoch, &st->epoch_step, &st->global_batch};
    int64_t world;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (get_scalar(g, keys[i], H5T_NATIVE_INT64, dst[i]))
            return error_set(err, ERR_INPUT, "%s: /trainer/%s is missing or not a number", path, keys[i]);
    if (get_scalar(g, "seed", H5T_NATIVE_UINT64, &st->seed))
        return error_set(err, ERR_INPUT, "%s: /trainer/seed is missing or not a number", path);
    if (get_scalar(g, "world_size", H5T_NATIVE_INT64, &world) || world < 1 || world > 1 << 24)
        return error_set(err, ERR_INPUT, "%s: /trainer/world_size is missing or invalid", path);
    st->world_size = (int)world;
    if (get_scalar(g, "best_val_loss", H5T_NATIVE_DOUBLE, &st->best_val_loss))
        return error_set(err, ERR_INPUT, "%s: /trainer/best_val_loss is missing or not a number", path);
    return ERR_OK;
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
