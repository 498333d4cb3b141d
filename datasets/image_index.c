/* image_index.c: a class-folder tree listed as Keras's index_directory lists it, and numpy's legacy shuffle
 * (MT19937) for Keras's training/validation split. */
#include "image_index.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- names ---------------------------------------------------------------------------------------------- */

int image_utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;

    while (*s) {
        int len = *s < 0x80 ? 1 : (*s & 0xe0) == 0xc0 ? 2 : (*s & 0xf0) == 0xe0 ? 3 : (*s & 0xf8) == 0xf0 ? 4 : 0;
        uint32_t cp = len == 1 ? *s : len == 2 ? *s & 0x1fu : len == 3 ? *s & 0x0fu : *s & 0x07u;
        if (len == 0)
            return 0;
        for (int i = 1; i < len; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i] & 0x3fu);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        s += len;
    }
    return 1;
}

char *image_class_folder(const char *name)
{
    size_t len = strlen(name), k = 0;
    char *out = malloc(3 * len + 1);

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '/') {
            memcpy(out + k, "%2F", 3);
            k += 3;
        } else {
            out[k++] = name[i];
        }
    }
    out[k] = 0;
    return out;
}

/* Keras's formats, lower-cased before the comparison. 1: read, 2: known to Keras but not read here. */
static int image_kind(const char *name)
{
    static const char *const read[] = {".png", ".jpg", ".jpeg"}, *const skipped[] = {".bmp", ".gif"};
    size_t len = strlen(name);

    for (int i = 0; i < 3; i++)
        if (len >= strlen(read[i]) && strcasecmp(name + len - strlen(read[i]), read[i]) == 0)
            return 1;
    for (int i = 0; i < 2; i++)
        if (len >= strlen(skipped[i]) && strcasecmp(name + len - strlen(skipped[i]), skipped[i]) == 0)
            return 2;
    return 0;
}

/* dir/name, without doubling a slash the user typed ("fashion/"). */
static char *join(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2, d = strlen(dir);
    char *p = malloc(len);

    if (p)
        snprintf(p, len, "%s%s%s", dir, d > 0 && dir[d - 1] == '/' ? "" : "/", name);
    return p;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- a growing list of strings -------------------------------------------------------------------------- */

struct strings {
    char **v;
    int64_t n, cap;
};

static int strings_push(struct strings *s, char *str)
{
    if (!str)
        return -1;
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        char **v = realloc(s->v, sizeof *v * cap);
        if (!v) {
            free(str);
            return -1;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return 0;
}

static void strings_release(struct strings *s)
{
    for (int64_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    *s = (struct strings){0};
}

/* Names in dir (not . and ..), sorted. ERR_IO / ERR_INPUT when it cannot be listed. */
static int list_dir(const char *dir, struct strings *out, struct error *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    *out = (struct strings){0};
    if (!d)
        return error_set(err, errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? ERR_INPUT : ERR_IO,
                         "%s: cannot list: %s", dir, strerror(errno));
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && strings_push(out, strdup(e->d_name))) {
            closedir(d);
            strings_release(out);
            return error_set(err, ERR_INTERNAL, "%s: out of memory", dir);
        }
    closedir(d);
    if (out->n > 1)
        qsort(out->v, (size_t)out->n, sizeof *out->v, by_string);
    return ERR_OK;
}

/* ---- walking a class folder ----------------------------------------------------------------------------- */

/* One file found: Keras sorts the walk by folder path, then the names within a folder. */
struct found {
    char *root, *name;
};

struct walk {
    struct found *v;
    int64_t n, cap;
    int64_t not_read;
};

static int walk_push(struct walk *w, const char *root, const char *name)
{
    if (w->n == w->cap) {
        int64_t cap = w->cap ? 2 * w->cap : 256;
        struct found *v = realloc(w->v, sizeof *v * cap);
        if (!v)
            return -1;
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n].root = strdup(root);
    w->v[w->n].name = strdup(name);
    if (!w->v[w->n].root || !w->v[w->n].name) {
        free(w->v[w->n].root);
        free(w->v[w->n].name);
        return -1;
    }
    w->n++;
    return 0;
}

static int by_found(const void *a, const void *b)
{
    const struct found *x = a, *y = b;
    int c = strcmp(x->root, y->root);
    return c ? c : strcmp(x->name, y->name);
}

/* os.walk(followlinks=False): real sub-folders are entered; a symlink to a folder is neither entered nor a
 * file; anything else (a symlink to a file, a broken or looping symlink) is a file. */
static int walk_dir(const char *dir, struct walk *w, int depth, struct error *err)
{
    struct strings names;
    int rc = list_dir(dir, &names, err);

    if (rc)
        return rc;
    if (depth > 64)
        rc = error_set(err, ERR_INPUT, "%s: folders nested more than 64 deep", dir);
    for (int64_t i = 0; i < names.n && rc == ERR_OK; i++) {
        char *path = join(dir, names.v[i]);
        struct stat ls, st;
        if (!path) {
            rc = error_set(err, ERR_INTERNAL, "%s: out of memory", dir);
            break;
        }
        if (lstat(path, &ls) == 0 && S_ISDIR(ls.st_mode)) {
            rc = walk_dir(path, w, depth + 1, err);
        } else if (!(S_ISLNK(ls.st_mode) && stat(path, &st) == 0 && S_ISDIR(st.st_mode))) {
            int kind = image_kind(names.v[i]);
            if (kind == 2)
                w->not_read++;
            if (kind == 1 && walk_push(w, dir, names.v[i]))
                rc = error_set(err, ERR_INTERNAL, "%s: out of memory", dir);
        }
        free(path);
    }
    strings_release(&names);
    return rc;
}

/* Appends class `label`'s files (folder `folder`) to ix. */
static int index_class(struct image_index *ix, const char *folder, int label, struct error *err)
{
    struct walk w = {0};
    int rc = walk_dir(folder, &w, 0, err);

    if (rc == ERR_OK && w.n == 0)
        rc = error_set(err, ERR_INPUT, "%s: no .png or .jpg image in this class folder", folder);
    if (rc == ERR_OK) {
        struct image_entry *files = realloc(ix->files, sizeof *files * (ix->n + w.n));
        if (!files)
            rc = error_set(err, ERR_INTERNAL, "%s: out of memory", folder);
        else
            ix->files = files;
    }
    if (w.n > 1)
        qsort(w.v, (size_t)w.n, sizeof *w.v, by_found);
    for (int64_t i = 0; i < w.n; i++) {
        if (rc == ERR_OK) {
            char *path = join(w.v[i].root, w.v[i].name);
            if (!path)
                rc = error_set(err, ERR_INTERNAL, "%s: out of memory", folder);
            else
                ix->files[ix->n++] = (struct image_entry){path, label};
        }
        free(w.v[i].root);
        free(w.v[i].name);
    }
    ix->not_read += w.not_read;
    free(w.v);
    return rc;
}

int image_list_folder(const char *dir, char ***paths, int64_t *n, struct error *err)
{
    struct walk w = {0};
    int rc = walk_dir(dir, &w, 0, err);

    *paths = NULL;
    *n = 0;
    if (w.n > 1)
        qsort(w.v, (size_t)w.n, sizeof *w.v, by_found);
    if (rc == ERR_OK && w.n == 0)
        rc = error_set(err, ERR_INPUT, "%s: no .png or .jpg image in this folder", dir);
    if (rc == ERR_OK && !(*paths = malloc(sizeof **paths * w.n)))
        rc = error_set(err, ERR_INTERNAL, "%s: out of memory", dir);
    for (int64_t i = 0; i < w.n; i++) {
        if (rc == ERR_OK && !((*paths)[*n] = join(w.v[i].root, w.v[i].name)))
            rc = error_set(err, ERR_INTERNAL, "%s: out of memory", dir);
        else if (rc == ERR_OK)
            (*n)++;
        free(w.v[i].root);
        free(w.v[i].name);
    }
    free(w.v);
    if (rc) {
        for (int64_t i = 0; i < *n; i++)
            free((*paths)[i]);
        free(*paths);
        *paths = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- the classes ---------------------------------------------------------------------------------------- */

/* DIR's sub-folders not starting with '.', in order (Keras's listdir + isdir, following symlinks). */
static int folder_classes(const char *dir, struct strings *classes, struct error *err)
{
    struct strings names;
    int rc = list_dir(dir, &names, err);

    *classes = (struct strings){0};
    for (int64_t i = 0; i < names.n && rc == ERR_OK; i++) {
        char *path = join(dir, names.v[i]);
        struct stat st;
        if (path && names.v[i][0] != '.' && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (!image_utf8_valid(names.v[i]))
                rc = error_set(err, ERR_INPUT, "%s: folder name is not valid UTF-8 (class names are stored as "
                               "UTF-8)", path);
            else if (strings_push(classes, strdup(names.v[i])))
                rc = error_set(err, ERR_INTERNAL, "%s: out of memory", dir);
        }
        free(path);
    }
    strings_release(&names);
    if (rc == ERR_OK && classes->n == 0)
        rc = error_set(err, ERR_INPUT, "%s: no class folders (one sub-folder of images per class)", dir);
    if (rc)
        strings_release(classes);
    return rc;
}

/* DIR/class_names.txt's lines, when the file exists (*found = 1). */
static int listed_classes(const char *dir, struct strings *classes, int *found, struct error *err)
{
    char *path = join(dir, IMAGE_CLASS_LIST), line[4096];
    FILE *f = path ? fopen(path, "r") : NULL;
    int rc = ERR_OK;

    *classes = (struct strings){0};
    *found = f != NULL;
    while (f && rc == ERR_OK && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!image_utf8_valid(line) || !line[0])
            rc = error_set(err, ERR_INPUT, "%s: line %lld is %s", path, (long long)classes->n + 1,
                           line[0] ? "not valid UTF-8" : "empty");
        else if (strings_push(classes, strdup(line)))
            rc = error_set(err, ERR_INTERNAL, "%s: out of memory", path);
    }
    if (f)
        fclose(f);
    if (rc == ERR_OK && *found && classes->n == 0)
        rc = error_set(err, ERR_INPUT, "%s: lists no class", path);
    free(path);
    return rc;
}

void image_index_release(struct image_index *ix)
{
    for (int64_t i = 0; i < ix->n; i++)
        free(ix->files[i].path);
    free(ix->files);
    for (int i = 0; i < ix->n_classes; i++)
        free(ix->class_names[i]);
    free(ix->class_names);
    *ix = (struct image_index){0};
}

static int pick_classes(const char *dir, const char *const *names, int n_names, struct strings *classes,
                        struct error *err)
{
    struct stat st;
    int found = 0, rc;

    if (stat(dir, &st) != 0)
        return error_set(err, errno == ENOENT || errno == ENOTDIR || errno == ELOOP ? ERR_INPUT : ERR_IO, "%s: %s",
                         dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return error_set(err, ERR_INPUT, "%s: not a folder (import images reads a folder of class folders)", dir);
    *classes = (struct strings){0};
    for (int i = 0; i < n_names; i++)
        if (strings_push(classes, strdup(names[i])))
            return strings_release(classes), error_set(err, ERR_INTERNAL, "out of memory");
    if (n_names > 0)
        return ERR_OK;
    if ((rc = listed_classes(dir, classes, &found, err)) || found)
        return rc;
    return folder_classes(dir, classes, err);
}

int image_index_build(const char *dir, const char *const *names, int n_names, struct image_index *ix,
                      struct error *err)
{
    struct strings classes;
    int rc = pick_classes(dir, names, n_names, &classes, err);

    *ix = (struct image_index){0};
    if (rc)
        return rc;
    for (int64_t i = 0; i < classes.n && rc == ERR_OK; i++)
        for (int64_t j = 0; j < i && rc == ERR_OK; j++)
            if (strcmp(classes.v[i], classes.v[j]) == 0)
                rc = error_set(err, ERR_INPUT, "%s: class '%s' named twice", dir, classes.v[i]);
    if (rc == ERR_OK && classes.n > 1000)
        rc = error_set(err, ERR_INPUT, "%s: %lld classes, more than 1000", dir, (long long)classes.n);
    for (int64_t i = 0; i < classes.n && rc == ERR_OK; i++) {
        char *folder = image_class_folder(classes.v[i]), *path = folder ? join(dir, folder) : NULL;
        struct stat st;
        if (!path)
            rc = error_set(err, ERR_INTERNAL, "out of memory");
        else if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = error_set(err, ERR_INPUT, "%s: class '%s' has no folder", path, classes.v[i]);
        else
            rc = index_class(ix, path, (int)i, err);
        free(folder);
        free(path);
    }
    ix->class_names = classes.v;
    ix->n_classes = (int)classes.n;
    if (rc)
        image_index_release(ix);
    return rc;
}

/* ---- numpy's legacy RandomState(seed).shuffle ----------------------------------------------------------- */

struct mt19937 {
    uint32_t s[624];
    int i;
};

static void mt_seed(struct mt19937 *mt, uint32_t seed)
{
    mt->s[0] = seed;
    for (int i = 1; i < 624; i++)
        mt->s[i] = 1812433253u * (mt->s[i - 1] ^ (mt->s[i - 1] >> 30)) + (uint32_t)i;
    mt->i = 624;
}

static uint32_t mt_next(struct mt19937 *mt)
{
    if (mt->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (mt->s[k] & 0x80000000u) | (mt->s[(k + 1) % 624] & 0x7fffffffu);
            mt->s[k] = mt->s[(k + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
        }
        mt->i = 0;
    }
    uint32_t y = mt->s[mt->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* numpy's random_interval: a uniform draw in [0, max] by masked rejection (32-bit draws below 2^32). */
static uint64_t mt_interval(struct mt19937 *mt, uint64_t max)
{
    uint64_t mask = max, v;

    if (max == 0)
        return 0;
    for (int s = 1; s <= 32; s *= 2)
        mask |= mask >> s;
    if (max <= 0xffffffffu) {
        while ((v = mt_next(mt) & mask) > max)
            ;
    } else {
        do {
            uint64_t hi = mt_next(mt);
            v = (hi << 32 | mt_next(mt)) & mask;
        } while (v > max);
    }
    return v;
}

void image_shuffle(int64_t n, uint32_t seed, int64_t *perm)
{
    struct mt19937 mt;

    mt_seed(&mt, seed);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i >= 1; i--) {
        int64_t j = (int64_t)mt_interval(&mt, (uint64_t)i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int64_t image_split(int64_t n, double fraction, uint32_t seed, uint8_t *is_val)
{
    int64_t *perm = malloc(sizeof *perm * (n > 0 ? n : 1)), n_val = (int64_t)(fraction * (double)n);

    if (!perm)
        return -1;
    image_shuffle(n, seed, perm);
    memset(is_val, 0, (size_t)n);
    for (int64_t k = n - n_val; k < n; k++)
        is_val[perm[k]] = 1;
    free(perm);
    return n_val;
}
