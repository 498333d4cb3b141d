/* dataset.c: opening and validating the HDF5 dataset, reading a batch of samples (dataset_write.c writes). */
#define _POSIX_C_SOURCE 200809L

#include "dataset.h"
#include "dataset_layout.h"
#include "h5file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* One requested sample: its index in the file, where it goes in the caller's buffers, and which row of the
 * scratch buffer (distinct samples in file order) holds it. */
struct dataset_slot {
    int64_t idx;
    int pos;
    int row;
};

/* ---- opening -------------------------------------------------------------------------------------------- */

/* Opens /NAME, checks it is an integer dataset of the given rank and returns its shape. */
static int open_integer_dataset(struct dataset *ds, const char *name, int rank, hid_t *out, hsize_t *dims,
                                struct error *err)
{
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    htri_t exists = H5Lexists(ds->file, name, H5P_DEFAULT);
    int rc = ERR_OK, got_rank;

    if (exists <= 0)
        return error_set(err, ERR_INPUT, "%s: no /%s dataset", ds->path, name);
    *out = H5Dopen2(ds->file, name, H5P_DEFAULT);
    if (*out < 0) {
        rc = error_set(err, ERR_INPUT, "%s: /%s is not a readable dataset", ds->path, name);
        goto fail;
    }
    type = H5Dget_type(*out);
    space = H5Dget_space(*out);
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_INTEGER) {
        rc = error_set(err, ERR_INPUT, "%s: /%s is not an integer array", ds->path, name);
        goto fail;
    }
    got_rank = H5Sget_simple_extent_ndims(space);
    if (got_rank != rank || H5Sget_simple_extent_dims(space, dims, NULL) != rank) {
        rc = error_set(err, ERR_INPUT, "%s: /%s has rank %d, expected %d%s", ds->path, name, got_rank, rank,
                       rank == 4 ? " (N, H, W, C)" : " (N,)");
        goto fail;
    }
fail:
    close_id(&type, H5Tclose);
    close_id(&space, H5Sclose);
    if (rc)
        close_id(out, H5Dclose);
    return rc;
}

/* With the chunk cache off, HDF5 reads an unfiltered chunk's selected bytes straight from the file, so a
 * random sample costs its own size rather than its whole chunk (128 KiB). Compressed chunks keep the cache:
 * each must be inflated whole anyway. The cache is set when a dataset is opened, and a second open of an
 * open dataset shares the first one's, hence the close before the reopen. */
static int uncache_images(struct dataset *ds, struct error *err)
{
    hid_t dcpl = H5Dget_create_plist(ds->images), dapl;
    int filtered = dcpl < 0 || H5Pget_nfilters(dcpl) != 0;

    close_id(&dcpl, H5Pclose);
    if (filtered)
        return ERR_OK;
    close_id(&ds->images, H5Dclose);
    dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0)
        H5Pset_chunk_cache(dapl, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT);
    ds->images = H5Dopen2(ds->file, "images", dapl >= 0 ? dapl : H5P_DEFAULT);
    close_id(&dapl, H5Pclose);
    if (ds->images < 0)
        return error_set(err, ERR_INPUT, "%s: /images is not a readable dataset", ds->path);
    return ERR_OK;
}

/* Each factor is checked before it multiplies, so the product cannot wrap around. */
static int sample_shape_ok(const hsize_t *hwc)
{
    hsize_t bytes = 1;
    for (int i = 0; i < 3; i++) {
        if (hwc[i] == 0 || hwc[i] > MAX_SAMPLE_BYTES)
            return 0;
        bytes *= hwc[i];
        if (bytes > MAX_SAMPLE_BYTES)
            return 0;
    }
    return 1;
}

static int open_images(struct dataset *ds, struct error *err)
{
    hsize_t dims[4];
    hid_t type;
    int is_u8, rc = open_integer_dataset(ds, "images", 4, &ds->images, dims, err);

    if (rc)
        return rc;
    type = H5Dget_type(ds->images);
    is_u8 = type >= 0 && H5Tget_size(type) == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    close_id(&type, H5Tclose);
    if (!is_u8)
        return error_set(err, ERR_INPUT, "%s: /images is not uint8", ds->path);
    if (dims[0] == 0)
        return error_set(err, ERR_INPUT, "%s: /images has no samples", ds->path);
    if (dims[0] > INT64_MAX || !sample_shape_ok(dims + 1))
        return error_set(err, ERR_INPUT, "%s: /images has an unusable sample shape (%llu, %llu, %llu)", ds->path,
                         (unsigned long long)dims[1], (unsigned long long)dims[2], (unsigned long long)dims[3]);
    ds->n = (int64_t)dims[0];
    ds->h = (int)dims[1];
    ds->w = (int)dims[2];
    ds->c = (int)dims[3];
    return uncache_images(ds, err);
}

static int open_labels(struct dataset *ds, struct error *err)
{
    hsize_t dims[1];
    int rc = open_integer_dataset(ds, "labels", 1, &ds->labels, dims, err);

    if (rc)
        return rc;
    if ((int64_t)dims[0] != ds->n)
        return error_set(err, ERR_INPUT, "%s: /labels has %llu samples but /images has %lld", ds->path,
                         (unsigned long long)dims[0], (long long)ds->n);
    return ERR_OK;
}

/* Variable-length strings: HDF5 allocates each one; we copy them and give them back. The memory type takes
 * the file's character set, since HDF5 will not convert between ASCII and UTF-8. */
static int read_vlen_names(hid_t attr, hid_t ftype, hid_t space, int count, char **names)
{
    hid_t mtype = H5Tcopy(H5T_C_S1);
    char **raw = calloc((size_t)count, sizeof *raw);
    int rc = -1;

    if (mtype < 0 || !raw || H5Tset_size(mtype, H5T_VARIABLE) < 0 || H5Tset_cset(mtype, H5Tget_cset(ftype)) < 0)
        goto fail;
    if (H5Aread(attr, mtype, raw) < 0)
        goto fail;
    rc = 0;
    for (int i = 0; i < count; i++)
        if (!(names[i] = strdup(raw[i] ? raw[i] : "")))
            rc = -1;
    H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, raw);
fail:
    free(raw);
    close_id(&mtype, H5Tclose);
    return rc;
}

/* Fixed-length strings (numpy 'S' arrays from h5py): null- or space-padded to the type's size. */
static int read_fixed_names(hid_t attr, hid_t ftype, int count, char **names)
{
    size_t size = H5Tget_size(ftype);
    char *raw = size ? malloc((size_t)count * size) : NULL;
    int rc = -1;

    if (!raw || H5Aread(attr, ftype, raw) < 0)
        goto fail;
    rc = 0;
    for (int i = 0; i < count; i++) {
        const char *s = raw + (size_t)i * size;
        size_t len = strnlen(s, size);
        while (len > 0 && s[len - 1] == ' ')
            len--;
        if (!(names[i] = strndup(s, len)))
            rc = -1;
    }
fail:
    free(raw);
    return rc;
}

/* class_names on the root group (what we write) or on /labels (what some converters write): 0 when there
 * is none, negative when it is there but cannot be opened. */
static hid_t open_class_names(struct dataset *ds)
{
    if (H5Aexists(ds->file, "class_names") > 0)
        return H5Aopen(ds->file, "class_names", H5P_DEFAULT);
    if (H5Aexists(ds->labels, "class_names") > 0)
        return H5Aopen(ds->labels, "class_names", H5P_DEFAULT);
    return 0;
}

static int read_class_names(struct dataset *ds, struct error *err)
{
    hid_t attr = open_class_names(ds), type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hssize_t count = 0;
    int rc = ERR_OK, failed;

    if (attr == 0)
        return ERR_OK;
    type = attr > 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    space = attr > 0 ? H5Aget_space(attr) : H5I_INVALID_HID;
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_ndims(space) > 1 ||
        (count = H5Sget_simple_extent_npoints(space)) < 0) {
        rc = error_set(err, ERR_INPUT, "%s: attribute class_names is not a list of strings", ds->path);
        goto fail;
    }
    if (count > DATASET_MAX_CLASSES) {
        rc = error_set(err, ERR_INPUT, "%s: attribute class_names has %lld names, more than %d", ds->path,
                       (long long)count, DATASET_MAX_CLASSES);
        goto fail;
    }
    if (count == 0)
        goto fail;
    ds->class_names = calloc((size_t)count, sizeof *ds->class_names);
    ds->n_class_names = ds->class_names ? (int)count : 0;
    if (!ds->class_names)
        failed = 1;
    else if (H5Tis_variable_str(type) > 0)
        failed = read_vlen_names(attr, type, space, (int)count, ds->class_names);
    else
        failed = read_fixed_names(attr, type, (int)count, ds->class_names);
    if (failed)
        rc = error_set(err, ERR_INPUT, "%s: cannot read attribute class_names", ds->path);
fail:
    close_id(&type, H5Tclose);
    close_id(&space, H5Sclose);
    close_id(&attr, H5Aclose);
    return rc;
}

/* ---- raw reads ------------------------------------------------------------------------------------------ */

/* H5Dread costs ~3 us a call before it reads a byte, and a shuffled batch is one call per sample: 100 us for
 * 32 Fashion-MNIST samples, taken from the cores the step computes on. When /images is stored unfiltered,
 * contiguous or in chunks of whole samples (what `trainer import` writes), each sample is a plain run of
 * bytes in the file: HDF5 reports where each chunk starts (H5Dget_chunk_info_by_coord, H5Dget_offset) once
 * at open, and dataset_read takes the bytes with pread, 32 samples in ~5 us. Anything else (compressed
 * chunks, chunks that split a sample, a chunk never written, a user block, a location outside the file)
 * keeps every read in HDF5. */
static int raw_locate_chunks(struct dataset *ds, hid_t dcpl, int64_t sample, off_t file_size)
{
    hsize_t cdims[4];
    if (H5Pget_chunk(dcpl, 4, cdims) != 4 || cdims[1] != (hsize_t)ds->h || cdims[2] != (hsize_t)ds->w ||
        cdims[3] != (hsize_t)ds->c || cdims[0] == 0 || cdims[0] > (hsize_t)ds->n)
        return -1;
    ds->raw_per_chunk = (int64_t)cdims[0];
    ds->raw_blocks = (ds->n + ds->raw_per_chunk - 1) / ds->raw_per_chunk;
    ds->raw_offset = malloc((size_t)ds->raw_blocks * sizeof *ds->raw_offset);
    if (!ds->raw_offset)
        return -1;
    for (int64_t b = 0; b < ds->raw_blocks; b++) {
        hsize_t coord[4] = {(hsize_t)(b * ds->raw_per_chunk), 0, 0, 0}, size = 0;
        haddr_t addr = HADDR_UNDEF;
        unsigned mask = 0;
        /* Stored chunks are whole, the last one too (its rows past n unused). */
        if (H5Dget_chunk_info_by_coord(ds->images, coord, &mask, &addr, &size) < 0 || mask != 0 ||
            addr == HADDR_UNDEF || size != (hsize_t)(ds->raw_per_chunk * sample) ||
            addr > (haddr_t)file_size || size > (hsize_t)file_size - addr)
            return -1;
        ds->raw_offset[b] = (int64_t)addr;
    }
    return 0;
}

static int raw_locate_contiguous(struct dataset *ds, int64_t sample, off_t file_size)
{
    haddr_t addr = H5Dget_offset(ds->images);
    hsize_t bytes = (hsize_t)ds->n * (hsize_t)sample;
    if (addr == HADDR_UNDEF || H5Dget_storage_size(ds->images) != bytes || addr > (haddr_t)file_size ||
        bytes > (hsize_t)file_size - addr)
        return -1;
    ds->raw_per_chunk = ds->n;
    ds->raw_blocks = 1;
    ds->raw_offset = malloc(sizeof *ds->raw_offset);
    if (!ds->raw_offset)
        return -1;
    ds->raw_offset[0] = (int64_t)addr;
    return 0;
}

/* Sets up raw reads when the layout allows them; leaves them off (raw_fd -1) otherwise. Never an error. */
static void raw_setup(struct dataset *ds)
{
    hid_t fcpl = H5Fget_create_plist(ds->file), dcpl = H5Dget_create_plist(ds->images);
    hsize_t userblock = 1;
    int64_t sample = (int64_t)ds->h * ds->w * ds->c;
    struct stat st;
    int ok = 0, fd = open(ds->path, O_RDONLY | O_CLOEXEC);

    if (fcpl < 0 || dcpl < 0 || fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        H5Pget_userblock(fcpl, &userblock) < 0 || userblock != 0 || H5Pget_nfilters(dcpl) != 0)
        goto done;
    switch (H5Pget_layout(dcpl)) {
    case H5D_CHUNKED:
        ok = raw_locate_chunks(ds, dcpl, sample, st.st_size) == 0;
        break;
    case H5D_CONTIGUOUS:
        ok = raw_locate_contiguous(ds, sample, st.st_size) == 0;
        break;
    default:
        break;
    }
done:
    close_id(&fcpl, H5Pclose);
    close_id(&dcpl, H5Pclose);
    if (ok) {
        ds->raw_fd = fd;
        return;
    }
    if (fd >= 0)
        close(fd);
    dataset_no_raw(ds);
}

/* Only raw_offset tells that raw_fd is ours: a dataset zeroed and never opened has raw_fd 0, stdin. */
void dataset_no_raw(struct dataset *ds)
{
    if (ds->raw_offset && ds->raw_fd >= 0)
        close(ds->raw_fd);
    ds->raw_fd = -1;
    free(ds->raw_offset);
    ds->raw_offset = NULL;
    ds->raw_blocks = ds->raw_per_chunk = 0;
}

/* Reads samples [start, start + len) into dst with pread, block by block. */
static int raw_read(const struct dataset *ds, int64_t start, int64_t len, uint8_t *dst)
{
    int64_t sample = (int64_t)ds->h * ds->w * ds->c;
    while (len > 0) {
        int64_t b = start / ds->raw_per_chunk, in = start - b * ds->raw_per_chunk;
        int64_t take = ds->raw_per_chunk - in < len ? ds->raw_per_chunk - in : len;
        size_t bytes = (size_t)(take * sample), done = 0;
        off_t off = (off_t)(ds->raw_offset[b] + in * sample);
        while (done < bytes) {
            ssize_t got = pread(ds->raw_fd, dst + done, bytes - done, off + (off_t)done);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                return -1; /* an error, or the file shrank since it was opened */
            done += (size_t)got;
        }
        dst += bytes;
        start += take;
        len -= take;
    }
    return 0;
}

int dataset_open(struct dataset *ds, const char *path, struct error *err)
{
    int rc;

    memset(ds, 0, sizeof *ds);
    ds->raw_fd = -1;
    ds->file = ds->images = ds->labels = H5I_INVALID_HID;
    snprintf(ds->path, sizeof ds->path, "%s", path);
    h5file_quiet();
    if ((rc = h5file_open_read(path, &ds->file, err)) || (rc = open_images(ds, err)) || (rc = open_labels(ds, err)) ||
        (rc = read_class_names(ds, err)))
        goto fail;
    raw_setup(ds);
    return ERR_OK;
fail:
    dataset_close(ds);
    return rc;
}

void dataset_close(struct dataset *ds)
{
    close_id(&ds->images, H5Dclose);
    close_id(&ds->labels, H5Dclose);
    close_id(&ds->file, H5Fclose);
    for (int i = 0; i < ds->n_class_names; i++)
        free(ds->class_names[i]);
    free(ds->class_names);
    free(ds->slots);
    free(ds->scratch_images);
    free(ds->scratch_labels);
    free(ds->scratch_coords);
    free(ds->all_labels);
    free(ds->all_images);
    dataset_no_raw(ds);
    ds->all_labels = NULL;
    ds->all_images = NULL;
    ds->class_names = NULL;
    ds->n_class_names = 0;
    ds->slots = NULL;
    ds->scratch_images = NULL;
    ds->scratch_labels = NULL;
    ds->scratch_coords = NULL;
    ds->scratch_cap = 0;
}

/* ---- reading a batch ------------------------------------------------------------------------------------ */

static int grow_scratch(struct dataset *ds, int n, struct error *err)
{
    size_t sample = (size_t)ds->h * ds->w * ds->c;
    struct dataset_slot *slots;
    uint8_t *images;
    int32_t *labels;
    hsize_t *coords;

    if (n <= ds->scratch_cap)
        return ERR_OK;
    slots = realloc(ds->slots, (size_t)n * sizeof *slots);
    if (slots)
        ds->slots = slots;
    images = realloc(ds->scratch_images, (size_t)n * sample);
    if (images)
        ds->scratch_images = images;
    labels = realloc(ds->scratch_labels, (size_t)n * sizeof *labels);
    if (labels)
        ds->scratch_labels = labels;
    coords = realloc(ds->scratch_coords, (size_t)n * sizeof *coords);
    if (coords)
        ds->scratch_coords = coords;
    if (!slots || !images || !labels || !coords)
        return error_set(err, ERR_INTERNAL, "%s: out of memory for a batch of %d samples", ds->path, n);
    ds->scratch_cap = n;
    return ERR_OK;
}

static int slot_cmp(const void *a, const void *b)
{
    const struct dataset_slot *x = a, *y = b;
    if (x->idx != y->idx)
        return x->idx < y->idx ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Sorts the requests by file index, so that consecutive samples are read as one block and a repeated one
 * only once; numbers the distinct samples (their rows in the scratch buffers) and lists their indices in
 * scratch_coords. Returns how many distinct samples there are. */
static int sort_requests(struct dataset *ds, const int64_t *idx, int n)
{
    struct dataset_slot *s = ds->slots;
    int rows = 0;

    for (int i = 0; i < n; i++)
        s[i] = (struct dataset_slot){.idx = idx[i], .pos = i};
    qsort(s, (size_t)n, sizeof *s, slot_cmp);
    for (int k = 0; k < n; k++) {
        if (k == 0 || s[k].idx != s[k - 1].idx)
            ds->scratch_coords[rows++] = (hsize_t)s[k].idx;
        s[k].row = rows - 1;
    }
    return rows;
}

/* The run of consecutive distinct indices that starts at slot *k: its first index and its length. *k moves
 * past it, repeats included (a repeat is idx == end - 1, already in the run; idx == end extends it). */
static hsize_t next_run(const struct dataset_slot *s, int n, int *k, hsize_t *start)
{
    hsize_t end;

    *start = (hsize_t)s[*k].idx;
    end = *start + 1;
    for ((*k)++; *k < n && (hsize_t)s[*k].idx <= end; (*k)++)
        if ((hsize_t)s[*k].idx == end)
            end++;
    return end - *start;
}

/* One H5Dread per run. HDF5 maps a union of blocks onto the chunks element by element (~100 us for one
 * 28x28 sample), but a single block in one call takes the fast path (~5 us). */
static int read_image_runs(struct dataset *ds, int n, hid_t fspace, hid_t mspace, uint8_t *images)
{
    const struct dataset_slot *s = ds->slots;
    size_t sample = (size_t)ds->h * ds->w * ds->c;

    for (int k = 0; k < n;) {
        hsize_t row = (hsize_t)s[k].row, start, len = next_run(s, n, &k, &start);
        if (ds->raw_offset) {
            if (raw_read(ds, (int64_t)start, (int64_t)len, images + row * sample) < 0)
                return -1;
            continue;
        }
        hsize_t fstart[4] = {start, 0, 0, 0}, mstart[4] = {row, 0, 0, 0};
        hsize_t count[4] = {len, (hsize_t)ds->h, (hsize_t)ds->w, (hsize_t)ds->c};
        if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, fstart, NULL, count, NULL) < 0 ||
            H5Sselect_hyperslab(mspace, H5S_SELECT_SET, mstart, NULL, count, NULL) < 0 ||
            H5Dread(ds->images, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, images) < 0)
            return -1;
    }
    return 0;
}

/* Reads the distinct samples of the sorted request into images (rows, h, w, c) and labels (rows,). */
static int read_rows(struct dataset *ds, int n, int rows, uint8_t *images, int32_t *labels, struct error *err)
{
    if (ds->raw_offset && ds->all_labels) { /* no HDF5 call at all */
        if (read_image_runs(ds, n, H5I_INVALID_HID, H5I_INVALID_HID, images) < 0)
            return error_set(err, ERR_INPUT, "%s: cannot read /images: damaged or truncated file", ds->path);
        for (int r = 0; r < rows; r++)
            labels[r] = ds->all_labels[ds->scratch_coords[r]];
        return ERR_OK;
    }
    hid_t fimages = H5Dget_space(ds->images), flabels = H5Dget_space(ds->labels);
    hsize_t mdims[4] = {(hsize_t)rows, (hsize_t)ds->h, (hsize_t)ds->w, (hsize_t)ds->c};
    hid_t mimages = H5Screate_simple(4, mdims, NULL), mlabels = H5Screate_simple(1, mdims, NULL);
    int rc = ERR_OK;

    if (fimages < 0 || flabels < 0 || mimages < 0 || mlabels < 0) {
        rc = error_set(err, ERR_INTERNAL, "%s: cannot set up reading %d samples", ds->path, n);
        goto fail;
    }
    if (read_image_runs(ds, n, fimages, mimages, images) < 0) {
        rc = error_set(err, ERR_INPUT, "%s: cannot read /images: damaged or truncated file", ds->path);
        goto fail;
    }
    /* Labels are one element per sample: from the cache when there is one; else a point selection of the
     * distinct indices (ascending, so the values arrive in row order) reads them in one call (~30 us for 32).
     * A union of 1-D hyperslabs would too, but HDF5 1.10 builds one in time quadratic in the number of runs. */
    if (ds->all_labels) {
        for (int r = 0; r < rows; r++)
            labels[r] = ds->all_labels[ds->scratch_coords[r]];
    } else if (H5Sselect_elements(flabels, H5S_SELECT_SET, (size_t)rows, ds->scratch_coords) < 0 ||
        H5Dread(ds->labels, H5T_NATIVE_INT32, mlabels, flabels, H5P_DEFAULT, labels) < 0)
        rc = error_set(err, ERR_INPUT, "%s: cannot read /labels: damaged or truncated file", ds->path);
fail:
    close_id(&fimages, H5Sclose);
    close_id(&flabels, H5Sclose);
    close_id(&mimages, H5Sclose);
    close_id(&mlabels, H5Sclose);
    return rc;
}

static int check_indices(const struct dataset *ds, const int64_t *idx, int n, struct error *err)
{
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return error_set(err, ERR_INTERNAL, "%s: sample index %lld outside [0, %lld)", ds->path,
                             (long long)idx[i], (long long)ds->n);
    return ERR_OK;
}

static int check_labels(const struct dataset *ds, const int64_t *idx, int n, const int32_t *labels,
                        int n_classes, struct error *err)
{
    for (int i = 0; n_classes > 0 && i < n; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return error_set(err, ERR_INPUT, "%s: sample %lld has label %d, outside [0, %d)", ds->path,
                             (long long)idx[i], (int)labels[i], n_classes);
    return ERR_OK;
}

/* Distinct and already ascending (eval, predict walk the file in order): the caller's buffers are the
 * file's order, so the read can go straight into them. */
static int in_file_order(const struct dataset *ds, int n, int rows)
{
    for (int k = 0; rows == n && k < n; k++)
        if (ds->slots[k].pos != k)
            return 0;
    return rows == n;
}

/* From the scratch rows (distinct samples, file order) to the caller's order, repeats included. */
static void scatter(const struct dataset *ds, int n, uint8_t *images, int32_t *labels)
{
    size_t sample = (size_t)ds->h * ds->w * ds->c;

    for (int k = 0; k < n; k++) {
        const struct dataset_slot *s = &ds->slots[k];
        memcpy(images + (size_t)s->pos * sample, ds->scratch_images + (size_t)s->row * sample, sample);
        labels[s->pos] = ds->scratch_labels[s->row];
    }
}

/* Reads every label once (dataset_read's first call), when they are few enough to keep. */
static int cache_labels(struct dataset *ds, struct error *err)
{
    if (ds->all_labels || ds->n > DATASET_CACHED_LABELS)
        return ERR_OK;
    int32_t *all = malloc((size_t)ds->n * sizeof *all);
    if (!all)
        return ERR_OK; /* read per batch instead */
    if (H5Dread(ds->labels, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, all) < 0) {
        free(all);
        return error_set(err, ERR_INPUT, "%s: cannot read /labels: damaged or truncated file", ds->path);
    }
    ds->all_labels = all;
    return ERR_OK;
}

/* Slabs of this many samples per H5Dread while taking /images into memory: HDF5's conversion buffers stay
 * small whatever the file. */
#define HOLD_SLAB 4096

/* Reads one byte of every page of the held images once, from this thread. Under a hypervisor that shadows
 * the guest's page tables, the first access from user space to each page the kernel filled (pread) is a fault
 * of several µs; a batch of random samples met one per sample through the first epoch (BENCHMARKS.md item 18:
 * 64 samples 118 -> 4 µs; the pass costs ~50 ms for 47 MB, once). Elsewhere it is a quick pass over memory. */
static void touch_pages(const uint8_t *p, size_t bytes)
{
    const size_t page = 4096;
    volatile uint8_t sink = 0;
    for (size_t k = 0; k < bytes; k += page)
        sink ^= p[k];
    (void)sink;
}

int dataset_hold_in_memory(struct dataset *ds, int64_t max_bytes, int *held, struct error *err)
{
    const size_t sample = (size_t)ds->h * ds->w * ds->c;
    *held = ds->all_images != NULL;
    if (*held || ds->n > DATASET_CACHED_LABELS || (double)ds->n * (double)sample > (double)max_bytes)
        return ERR_OK;
    h5file_quiet();
    int rc = cache_labels(ds, err);
    uint8_t *all = rc ? NULL : malloc((size_t)ds->n * sample);
    if (rc || !all || !ds->all_labels)
        return rc; /* short of memory: keep reading from the file */
    /* HDF5 reads zeros past the end of a file cut short: compare the file with the end HDF5 expects. */
    struct stat st;
    haddr_t eoa = 0;
    if (H5Fget_eoa(ds->file, &eoa) < 0 || stat(ds->path, &st) != 0 || (haddr_t)st.st_size < eoa) {
        free(all);
        return error_set(err, ERR_INPUT, "%s: cannot read /images: damaged or truncated file", ds->path);
    }
    if (ds->raw_offset) { /* whole unfiltered samples: their bytes, block by block */
        if (raw_read(ds, 0, ds->n, all) < 0) {
            free(all);
            return error_set(err, ERR_INPUT, "%s: cannot read /images: damaged or truncated file", ds->path);
        }
        touch_pages(all, (size_t)ds->n * sample);
        ds->all_images = all;
        *held = 1;
        return ERR_OK;
    }
    hid_t fspace = H5Dget_space(ds->images), mspace = H5I_INVALID_HID;
    for (int64_t start = 0; start < ds->n && rc == ERR_OK; start += HOLD_SLAB) {
        hsize_t count = (hsize_t)(ds->n - start < HOLD_SLAB ? ds->n - start : HOLD_SLAB);
        hsize_t first[4] = {(hsize_t)start, 0, 0, 0}, dims[4] = {count, (hsize_t)ds->h, (hsize_t)ds->w,
                                                                 (hsize_t)ds->c};
        close_id(&mspace, H5Sclose);
        mspace = H5Screate_simple(4, dims, NULL);
        if (fspace < 0 || mspace < 0 ||
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, first, NULL, dims, NULL) < 0 ||
            H5Dread(ds->images, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, all + (size_t)start * sample) < 0)
            rc = error_set(err, ERR_INPUT, "%s: cannot read /images: damaged or truncated file", ds->path);
    }
    close_id(&mspace, H5Sclose);
    close_id(&fspace, H5Sclose);
    if (rc) {
        free(all);
        return rc;
    }
    touch_pages(all, (size_t)ds->n * sample);
    ds->all_images = all;
    *held = 1;
    return ERR_OK;
}

int dataset_read(struct dataset *ds, const int64_t *idx, int n, uint8_t *images, int32_t *labels,
                 int n_classes, struct error *err)
{
    int rc, rows, direct;

    if (n <= 0)
        return n == 0 ? ERR_OK : error_set(err, ERR_INTERNAL, "%s: negative batch size %d", ds->path, n);
    if (ds->all_images) {
        const size_t sample = (size_t)ds->h * ds->w * ds->c;
        if ((rc = check_indices(ds, idx, n, err)))
            return rc;
        for (int i = 0; i < n; i++) {
            memcpy(images + (size_t)i * sample, ds->all_images + (size_t)idx[i] * sample, sample);
            labels[i] = ds->all_labels[idx[i]];
        }
        return check_labels(ds, idx, n, labels, n_classes, err);
    }
    h5file_quiet();
    if ((rc = check_indices(ds, idx, n, err)) || (rc = grow_scratch(ds, n, err)) || (rc = cache_labels(ds, err)))
        return rc;
    rows = sort_requests(ds, idx, n);
    direct = in_file_order(ds, n, rows);
    if ((rc = read_rows(ds, n, rows, direct ? images : ds->scratch_images, direct ? labels : ds->scratch_labels,
                        err)))
        return rc;
    if (!direct)
        scatter(ds, n, images, labels);
    return check_labels(ds, idx, n, labels, n_classes, err);
}

/* ---- label counts --------------------------------------------------------------------------------------- */

static int count_block(const struct dataset *ds, int64_t start, const int32_t *labels, hsize_t count,
                       int64_t *counts, int n_classes, int *max_label, struct error *err)
{
    for (hsize_t i = 0; i < count; i++) {
        int32_t v = labels[i];
        if (v < 0)
            return error_set(err, ERR_INPUT, "%s: sample %lld has negative label %d", ds->path,
                             (long long)(start + (int64_t)i), (int)v);
        if (v < n_classes)
            counts[v]++;
        if (v > *max_label)
            *max_label = v;
    }
    return ERR_OK;
}

int dataset_label_counts(struct dataset *ds, int64_t *counts, int n_classes, int *max_label, struct error *err)
{
    hsize_t block = LABEL_CHUNK;
    hid_t fspace, mspace;
    int32_t *buf = malloc(LABEL_CHUNK * sizeof *buf);
    int rc = ERR_OK, max = -1;

    h5file_quiet();
    fspace = H5Dget_space(ds->labels);
    mspace = H5Screate_simple(1, &block, NULL);
    for (int i = 0; i < n_classes; i++)
        counts[i] = 0;
    if (fspace < 0 || mspace < 0 || !buf) {
        rc = error_set(err, ERR_INTERNAL, "%s: cannot set up reading /labels", ds->path);
        goto fail;
    }
    for (int64_t start = 0; start < ds->n && !rc; start += LABEL_CHUNK) {
        hsize_t first = (hsize_t)start, zero = 0;
        hsize_t count = ds->n - start < LABEL_CHUNK ? (hsize_t)(ds->n - start) : LABEL_CHUNK;
        if (H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &first, NULL, &count, NULL) < 0 ||
            H5Sselect_hyperslab(mspace, H5S_SELECT_SET, &zero, NULL, &count, NULL) < 0 ||
            H5Dread(ds->labels, H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, buf) < 0) {
            rc = error_set(err, ERR_INPUT, "%s: cannot read /labels: damaged or truncated file", ds->path);
            break;
        }
        rc = count_block(ds, start, buf, count, counts, n_classes, &max, err);
    }
    if (max_label)
        *max_label = max;
fail:
    free(buf);
    close_id(&fspace, H5Sclose);
    close_id(&mspace, H5Sclose);
    return rc;
}
