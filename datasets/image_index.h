/* image_index.h: the files of a class-folder tree as Keras's image_dataset_from_directory lists them, and its
 * training/validation split. Internal to datasets/ (import_images.c, tests). */
#ifndef TRAINER_IMAGE_INDEX_H
#define TRAINER_IMAGE_INDEX_H

#include <stdint.h>

#include "error.h"

/* The list of classes a tree may carry beside its class folders (`export images` writes it): one UTF-8
 * name per line, in label order. */
#define IMAGE_CLASS_LIST "class_names.txt"

struct image_entry {
    char *path;  /* DIR/CLASS/..../NAME, malloc'd */
    int label;
};

struct image_index {
    struct image_entry *files; /* (n,) classes in order, then Keras's walk order within a class */
    int64_t n;
    char **class_names;        /* (n_classes,) malloc'd */
    int n_classes;
    int64_t not_read;          /* .bmp and .gif files seen and left out */
};

/* Lists DIR's classes and image files: classes are `names` when given (n_names > 0), else the lines of
 * DIR/class_names.txt when present, else DIR's sub-folders not starting with '.', in byte (code point)
 * order; a class's folder is its name with '/' written as "%2F" (image_class_folder). Within a class, every
 * .png/.jpg/.jpeg file (extension in any case) under its folder, sorted by folder path then name as Keras's
 * iter_valid_files; symlinked sub-folders are not entered (Keras's follow_links=False), symlinked files are
 * listed. ERR_INPUT naming the folder: DIR missing or not a folder, no class folders, a named class without
 * a folder, an empty class, a folder name that is not UTF-8; ERR_IO when a folder cannot be listed. */
int image_index_build(const char *dir, const char *const *names, int n_names, struct image_index *ix,
                      struct error *err);
void image_index_release(struct image_index *ix);

/* The .png/.jpg/.jpeg files under dir in the order of a class folder's (above): *paths malloc'd, each path
 * too. ERR_INPUT when there is none. */
int image_list_folder(const char *dir, char ***paths, int64_t *n, struct error *err);

/* The folder name of a class: its name with '/' as "%2F" (a folder name cannot hold '/'). malloc'd. */
char *image_class_folder(const char *name);

/* Whether s is valid UTF-8 (no overlongs, no surrogates). */
int image_utf8_valid(const char *s);

/* Keras's split: the file list shuffled as numpy's RandomState(seed).shuffle does (MT19937, legacy
 * bounded draws), its last int(fraction * n) entries for validation: is_val[i] = 1 for those (in the
 * original order's indices). Returns the validation count. */
int64_t image_split(int64_t n, double fraction, uint32_t seed, uint8_t *is_val);

/* numpy's RandomState(seed).shuffle of 0..n-1 into perm (exposed for tests). */
void image_shuffle(int64_t n, uint32_t seed, int64_t *perm);

#endif
