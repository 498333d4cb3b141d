/* compare_arrays.c: `compare_arrays A.h5 DSET_A B.h5 DSET_B TOL`: exit 0 when two float datasets have the same
 * shape and agree to TOL absolute everywhere, 1 when not; prints the largest difference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <hdf5.h>

/* The dataset as doubles, or NULL; *n gets the element count and dims its shape. */
static double *load(const char *path, const char *name, hsize_t *n, int *rank, hsize_t dims[8])
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = -1, s = -1;
    double *v = NULL;
    if (f < 0 || (d = H5Dopen2(f, name, H5P_DEFAULT)) < 0 || (s = H5Dget_space(d)) < 0)
        goto done;
    *rank = H5Sget_simple_extent_ndims(s);
    if (*rank < 1 || *rank > 8)
        goto done;
    H5Sget_simple_extent_dims(s, dims, NULL);
    *n = (hsize_t)H5Sget_simple_extent_npoints(s);
    v = malloc(sizeof(double) * (*n ? *n : 1));
    if (v && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        free(v);
        v = NULL;
    }
done:
    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    if (f >= 0)
        H5Fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: compare_arrays A.h5 DSET_A B.h5 DSET_B TOL\n");
        return 2;
    }
    hsize_t na = 0, nb = 0, da[8], db[8];
    int ra = 0, rb = 0;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    double *a = load(argv[1], argv[2], &na, &ra, da), *b = load(argv[3], argv[4], &nb, &rb, db);
    if (!a || !b) {
        fprintf(stderr, "compare_arrays: cannot read %s\n", !a ? argv[1] : argv[3]);
        return 2;
    }
    int same = ra == rb && na == nb;
    for (int i = 0; same && i < ra; i++)
        same = da[i] == db[i];
    if (!same) {
        fprintf(stderr, "compare_arrays: shapes differ\n");
        return 1;
    }
    double worst = 0, tol = atof(argv[5]);
    for (hsize_t i = 0; i < na; i++) {
        double d = fabs(a[i] - b[i]);
        worst = d > worst || isnan(d) ? d : worst;
    }
    printf("max |a-b| = %g over %llu values (tolerance %g)\n", worst, (unsigned long long)na, tol);
    free(a);
    free(b);
    return worst <= tol && !isnan(worst) ? 0 : 1;
}
