/* json_check.c: `json_check FILE [PATH ...]` for the shell tests: exits 1 with the parser's message unless FILE
 * holds exactly one JSON value; then prints each PATH's value (dot-separated object keys and array indices,
 * "per_class.0.class"), compact JSON one per line; a missing PATH exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static json_t *lookup(json_t *v, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *key = strtok(buf, "."); key && v; key = strtok(NULL, ".")) {
        char *end;
        long i = strtol(key, &end, 10);
        v = json_is_array(v) && *end == '\0' ? json_array_get(v, (size_t)i) : json_object_get(v, key);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: json_check FILE [PATH ...]\n");
        return 2;
    }
    json_error_t e;
    /* No JSON_DECODE_ANY: the trainer's --json output must be an object or an array. */
    json_t *root = json_load_file(argv[1], 0, &e);
    if (!root) {
        fprintf(stderr, "json_check: %s:%d:%d: %s\n", argv[1], e.line, e.column, e.text);
        return 1;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        json_t *v = lookup(root, argv[i]);
        char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (!s) {
            fprintf(stderr, "json_check: %s: no %s\n", argv[1], argv[i]);
            rc = 1;
            continue;
        }
        puts(s);
        free(s);
    }
    json_decref(root);
    return rc;
}
