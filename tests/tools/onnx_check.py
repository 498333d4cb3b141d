#!/usr/bin/python3
"""onnx_check.py: an exported ONNX model checked outside the trainer (run with Debian's /usr/bin/python3).

  onnx_check.py check MODEL.onnx IMAGES.h5 REFERENCE.h5 [REFERENCE2.h5 ...]
      python3-onnx's checker (full_check) and strict shape inference; the graph's interface (input `images`
      (N, H, W, C) float or uint8, output `probabilities` (N, classes), producer and metadata, the metadata's
      class_names the JSON array of IMAGES.h5's class_names, none when it has none); then the model
      run on IMAGES.h5's /images by OpenCV's dnn module, by this file's own numpy evaluator of the ONNX
      operators (written from the ONNX operator specification, float64), and by onnx.reference when the
      installed onnx has it: each must give every REFERENCE's /probabilities to 1e-5 (max abs difference).
  onnx_check.py data OUT.h5 N H W C CLASSES SEED [OUT.h5 N ...]
      datasets of random images and labels in the trainer's layout.
  onnx_check.py batch JOBS.tsv
      each line DESCRIPTION<TAB>check|same<TAB>ARGS (tab-separated) as above, in one process (the imports of onnx
      and OpenCV cost a second each); one "ok - DESCRIPTION (N checks)" or "FAIL - ..." line per job.
  onnx_check.py deep OUT.onnx LEVELS
      a model whose graph nests LEVELS subgraphs (graph > node > attribute > graph ...): a reader that recurses
      without a limit overflows its stack on a few MB of it.
  onnx_check.py same A.onnx B.onnx IMAGES.h5 [H W]
      two models (from the trainer's C tests) agree on IMAGES.h5 in OpenCV and in the numpy evaluator; with H W,
      B gets the centre H x W crop of the images.
Prints one "ok - ..." or "FAIL - ..." line per check; exits 1 when one fails.
"""
import json
import sys

import h5py
import numpy as np
import onnx
import onnx.checker
import onnx.numpy_helper
import onnx.shape_inference

TOL = 1e-5
failures = 0
quiet = False  # batch: one line per job instead of one per check
results = []


def report(ok, what):
    global failures
    results.append((ok, what))
    if not quiet:
        print(("ok - " if ok else "FAIL - ") + what)
    if not ok:
        failures += 1


# ---- a numpy evaluator of the operators, from the ONNX specification --------------------------------------------

def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def windows(x, kh, kw, sh, sw, oh, ow):
    """(kh*kw) strided views of x (N, C, H, W): for each kernel offset, the values it meets at every output."""
    for y in range(kh):
        for z in range(kw):
            yield y, z, x[:, :, y:y + sh * (oh - 1) + 1:sh, z:z + sw * (ow - 1) + 1:sw]


def pool_geometry(x, a):
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    assert a.get("ceil_mode", 0) == 0 and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    oh = (x.shape[2] + pt + pb - kh) // sh + 1
    ow = (x.shape[3] + pl + pr - kw) // sw + 1
    return kh, kw, sh, sw, ((0, 0), (0, 0), (pt, pb), (pl, pr)), oh, ow


def conv(x, w, b, a):
    assert a.get("group", 1) == 1 and list(a.get("dilations", [1, 1])) == [1, 1]
    kh, kw, sh, sw, pad, oh, ow = pool_geometry(x, dict(a, kernel_shape=w.shape[2:]))
    xp = np.pad(x, pad)
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for y, z, v in windows(xp, kh, kw, sh, sw, oh, ow):
        out += np.einsum("nchw,oc->nohw", v, w[:, :, y, z])
    return out + (b.reshape(1, -1, 1, 1) if b is not None else 0)


def max_pool(x, a):
    kh, kw, sh, sw, pad, oh, ow = pool_geometry(x, a)
    xp = np.pad(x, pad, constant_values=-np.inf)
    return np.max([v for _, _, v in windows(xp, kh, kw, sh, sw, oh, ow)], axis=0)


def average_pool(x, a):
    kh, kw, sh, sw, pad, oh, ow = pool_geometry(x, a)
    total = sum(v for _, _, v in windows(np.pad(x, pad), kh, kw, sh, sw, oh, ow))
    if a.get("count_include_pad", 0):
        return total / (kh * kw)
    ones = np.pad(np.ones((1, 1) + x.shape[2:]), pad)
    return total / sum(v for _, _, v in windows(ones, kh, kw, sh, sw, oh, ow))


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def gemm(ins, a):
    A, B = ins[0], ins[1]
    A = A.T if a.get("transA", 0) else A
    B = B.T if a.get("transB", 0) else B
    y = a.get("alpha", 1.0) * (A @ B)
    return y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 and ins[2] is not None else y


def batch_norm(ins, a):
    x, s, b, m, v = ins
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + a.get("epsilon", 1e-5)) * s.reshape(shape) + \
        b.reshape(shape)


def pad(ins, a):
    x, p = ins[0], ins[1].astype(int)
    assert a.get("mode", b"constant") in (b"constant", "constant")
    r = x.ndim
    value = ins[2].item() if len(ins) > 2 and ins[2] is not None else 0.0
    return np.pad(x, [(p[i], p[i + r]) for i in range(r)], constant_values=value)


def slice_(ins):
    x, starts, ends = ins[0], ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 else range(len(starts))
    steps = ins[4] if len(ins) > 4 else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def linear_axis(x, axis, scale):
    """Resize linear along one axis with half-pixel centres: output i reads the input at (i + 0.5) / scale - 0.5,
    between its floor and the next index, both clamped to the image (the specification's edge padding)."""
    n_in = x.shape[axis]
    n_out = int(np.floor(n_in * np.float64(scale)))
    c = (np.arange(n_out) + 0.5) / np.float64(scale) - 0.5
    lo = np.floor(c)
    frac = (c - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    lo = lo.astype(int)
    a = np.take(x, np.clip(lo, 0, n_in - 1), axis=axis)
    b = np.take(x, np.clip(lo + 1, 0, n_in - 1), axis=axis)
    return a * (1 - frac) + b * frac


def resize(ins, a):
    x = ins[0]
    assert a.get("mode") == b"linear" and a.get("coordinate_transformation_mode") == b"half_pixel"
    scales = ins[2] if len(ins) > 2 and ins[2] is not None and ins[2].size else None
    if scales is None:  # sizes: the scale is the output over the input size
        scales = np.asarray(ins[3], dtype=np.float64) / np.asarray(x.shape, dtype=np.float64)
    for axis in range(x.ndim):
        if scales[axis] != 1:
            x = linear_axis(x, axis, scales[axis])
    return x


def flatten(x, axis):
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def run_node(node, ins):
    a, op = attrs(node), node.op_type
    if op == "Conv":
        return conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a)
    table = {
        "Identity": lambda: ins[0],
        "Transpose": lambda: np.transpose(ins[0], a["perm"]),
        "Cast": lambda: ins[0].astype(np.float64),
        "Mul": lambda: ins[0] * ins[1],
        "Add": lambda: ins[0] + ins[1],
        "Sum": lambda: sum(ins),
        "Relu": lambda: np.maximum(ins[0], 0),
        "Sigmoid": lambda: 1 / (1 + np.exp(-ins[0])),
        "Tanh": lambda: np.tanh(ins[0]),
        "Softmax": lambda: softmax(ins[0], a.get("axis", -1)),
        "MaxPool": lambda: max_pool(ins[0], a),
        "AveragePool": lambda: average_pool(ins[0], a),
        "GlobalAveragePool": lambda: ins[0].mean(axis=(2, 3), keepdims=True),
        "GlobalMaxPool": lambda: ins[0].max(axis=(2, 3), keepdims=True),
        "Flatten": lambda: flatten(ins[0], a.get("axis", 1)),
        "Gemm": lambda: gemm(ins, a),
        "BatchNormalization": lambda: batch_norm(ins, a),
        "Concat": lambda: np.concatenate(ins, axis=a["axis"]),
        "Pad": lambda: pad(ins, a),
        "Slice": lambda: slice_(ins),
        "Resize": lambda: resize(ins, a),
    }
    if op not in table:
        raise ValueError("numpy evaluator: no operator " + op)
    return table[op]()


def evaluate(model, images):
    """The graph on images, in float64, nodes in the order the graph lists them (ONNX requires topological)."""
    values = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64)
              if t.data_type == onnx.TensorProto.FLOAT else onnx.numpy_helper.to_array(t)
              for t in model.graph.initializer}
    values[model.graph.input[0].name] = images
    for node in model.graph.node:
        values[node.output[0]] = run_node(node, [values[i] if i else None for i in node.input])
    return values[model.graph.output[0].name]


# ---- runtimes ----------------------------------------------------------------------------------------------------

def fixed_batch(model):
    d = model.graph.input[0].type.tensor_type.shape.dim[0]
    return d.dim_value if d.HasField("dim_value") else None


def in_batches(model, x, run):
    """run(chunk) over x in the graph's batch size (the last chunk padded with its first image)."""
    n = fixed_batch(model) or len(x)
    out = []
    for i in range(0, len(x), n):
        chunk = x[i:i + n]
        real = len(chunk)
        if real < n:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], n - real, axis=0)])
        out.append(np.asarray(run(chunk))[:real])
    return np.concatenate(out)


def opencv(path, model, x):
    import cv2
    net = cv2.dnn.readNetFromONNX(path)

    def run(chunk):
        net.setInput(chunk)
        return net.forward()
    return in_batches(model, x, run)


def reference_evaluator(model, x):
    try:
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        return None
    sess = ReferenceEvaluator(model)
    return in_batches(model, x, lambda c: sess.run(None, {"images": c})[0])


def inputs_for(model, images):
    if model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8:
        return images
    # The trainer scales by the float 1/255, as the uint8 graph's Mul does.
    return images.astype(np.float32) * np.float32(1.0 / 255.0)


def check_interface(path, model, images, classes, names):
    inp, out = model.graph.input, model.graph.output
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inp[0].type.tensor_type.shape.dim]
    odims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in out[0].type.tensor_type.shape.dim]
    ok = (len(inp) == 1 and inp[0].name == "images" and dims[1:] == list(images.shape[1:]) and
          len(out) == 1 and out[0].name == "probabilities" and odims == [dims[0], classes])
    report(ok, f"{path}: images {dims} -> probabilities {odims}")
    meta = {p.key: p.value for p in model.metadata_props}
    report(model.producer_name == "trainer" and "trainer_version" in meta,
           f"{path}: producer {model.producer_name} {model.producer_version}, metadata {sorted(meta)}")
    # A checkpoint trained on named classes keeps the dataset's names, and the export writes them as a JSON array.
    got = meta.get("class_names")
    try:
        got_names = json.loads(got) if got is not None else None
    except ValueError:
        got_names = "not JSON"
    report(got_names == names, f"{path}: class_names {got}, the data's {names}")


def dataset_names(f):
    """The dataset's class_names (on the root group, or on /labels as some converters put them), or None."""
    for obj in (f, f["labels"]):
        if "class_names" in obj.attrs:
            return [n.decode() if isinstance(n, bytes) else str(n) for n in obj.attrs["class_names"]]
    return None


def compare(path, what, got, refs):
    if got is None:
        return
    for name, ref in refs:
        diff = float(np.abs(np.asarray(got, dtype=np.float64) - ref).max()) if got.shape == ref.shape else np.inf
        report(diff <= TOL, f"{path}: {what} gives {name} to {diff:.2g}")


def check(path, images_path, ref_paths):
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        report(len(inferred.graph.value_info) > 0, f"{path}: checker (full_check) and strict shape inference")
    except Exception as e:  # the checker's own exception types vary between onnx versions
        report(False, f"{path}: checker: {str(e).splitlines()[0]}")
        return
    with h5py.File(images_path, "r") as f:
        images, names = f["images"][:], dataset_names(f)
    refs = [(p, h5py.File(p, "r")["probabilities"][:].astype(np.float64)) for p in ref_paths]
    check_interface(path, model, images, refs[0][1].shape[1], names)
    x = inputs_for(model, images)
    compare(path, "OpenCV dnn", opencv(path, model, x), refs)
    compare(path, "the numpy evaluator", in_batches(model, x, lambda c: evaluate(model, c)), refs)
    compare(path, "onnx.reference", reference_evaluator(model, x), refs)


def same(path_a, path_b, images_path, crop):
    a, b = onnx.load(path_a), onnx.load(path_b)
    for m, p in ((a, path_a), (b, path_b)):
        try:
            onnx.checker.check_model(m, full_check=True)
            onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
            report(True, f"{p}: checker (full_check) and strict shape inference")
        except Exception as e:
            report(False, f"{p}: checker: {str(e).splitlines()[0]}")
            return
    images = h5py.File(images_path, "r")["images"][:]
    cropped = images
    if crop:
        top, left = (images.shape[1] - crop[0]) // 2, (images.shape[2] - crop[1]) // 2
        cropped = images[:, top:top + crop[0], left:left + crop[1]]
    xa, xb = inputs_for(a, images), inputs_for(b, cropped)
    ref = in_batches(b, xb, lambda c: evaluate(b, c))
    compare(path_a, "the numpy evaluator", in_batches(a, xa, lambda c: evaluate(a, c)), [(path_b, ref)])
    compare(path_a, "OpenCV dnn", opencv(path_a, a, xa), [(path_b + " (numpy)", ref)])


def make_data(out, n, h, w, c, classes, seed):
    r = np.random.default_rng(seed)
    with h5py.File(out, "w") as f:
        f["images"] = r.integers(0, 256, (n, h, w, c), dtype=np.uint8)
        f["labels"] = r.integers(0, classes, n).astype(np.int32)


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7f, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def make_deep(out, levels):
    """Built from the inside out, one header per message, in linear time."""
    headers, inner = [], 0
    for _ in range(levels):
        for field in (6, 5, 1):  # AttributeProto.g, NodeProto.attribute, GraphProto.node
            h = varint(field << 3 | 2) + varint(inner)
            headers.append(h)
            inner += len(h)
    headers.append(varint(7 << 3 | 2) + varint(inner))  # ModelProto.graph
    with open(out, "wb") as f:
        f.write(varint(1 << 3) + varint(7) + b"".join(reversed(headers)))  # ir_version 7, then the graph


def batch(jobs):
    global quiet
    quiet = True
    with open(jobs) as f:
        for line in f:
            what, *args = line.rstrip("\n").split("\t")
            del results[:]
            try:
                if args[0] == "check":
                    check(args[1], args[2], args[3:])
                else:
                    same(args[1], args[2], args[3], [int(v) for v in args[4:]])
            except Exception as e:  # a job that cannot run fails alone
                report(False, f"{type(e).__name__}: {e}")
            bad = [w for ok, w in results if not ok]
            if bad or not results:
                print(f"FAIL - {what}: " + "; ".join(bad or ["no check ran"]))
            else:
                print(f"ok - {what} ({len(results)} checks)")
            sys.stdout.flush()


def main(argv):
    if len(argv) >= 4 and argv[0] == "check":
        check(argv[1], argv[2], argv[3:])
    elif len(argv) > 1 and (len(argv) - 1) % 7 == 0 and argv[0] == "data":
        for i in range(1, len(argv), 7):
            make_data(argv[i], *map(int, argv[i + 1:i + 7]))
    elif len(argv) == 2 and argv[0] == "batch":
        batch(argv[1])
    elif len(argv) == 3 and argv[0] == "deep":
        make_deep(argv[1], int(argv[2]))
    elif len(argv) in (4, 6) and argv[0] == "same":
        same(argv[1], argv[2], argv[3], [int(v) for v in argv[4:]])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
