"""Loading model artifacts safely for explanations.

The bytes must hash to the registered sha256 first, whatever the format. Then:

- skops: every type the file names is checked against exact allow-lists before anything is built, never
  against prefixes (``builtins.`` alone covers ``exec``). Instances may only be the scikit-learn
  estimators/transformers listed in ``ESTIMATORS`` (plus the internals they persist) and the NumPy/SciPy
  containers in ``CONTAINERS``; types stored as data (a ``dtype=`` parameter, a dict's key type) only the
  harmless ones in ``TYPES_AS_DATA``. Callables stored as data - ``builtins`` functions, ``operator``
  getters/callers, ``functools.partial``, bound methods, NumPy ufuncs, anything a ``FunctionTransformer``
  holds - are refused, as is any other type, unless an admin trusted this exact artifact (the version's
  sha256): then the file loads as it is, like a trusted pickle.
- XGBoost/LightGBM native files and ONNX (onnxruntime) load by default; bytes of another format get a
  clear error saying what was expected and what the bytes look like.
- pickle/joblib run code by design: refused unless an admin trusted the artifact (audited in the registry).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMATS = ("skops", "xgboost", "lightgbm", "onnx", "pickle", "joblib")

# Public scikit-learn classes a skops artifact may instantiate. Exact classes, resolved at first use to the
# name skops records (their defining module), so an upgrade that moves a class keeps it allowed.
ESTIMATORS = (
    "sklearn.pipeline.Pipeline", "sklearn.pipeline.FeatureUnion",
    "sklearn.compose.ColumnTransformer", "sklearn.compose.TransformedTargetRegressor",
    "sklearn.preprocessing.FunctionTransformer",   # harmless without a function; a function is refused
    "sklearn.preprocessing.StandardScaler", "sklearn.preprocessing.MinMaxScaler",
    "sklearn.preprocessing.MaxAbsScaler", "sklearn.preprocessing.RobustScaler", "sklearn.preprocessing.Normalizer",
    "sklearn.preprocessing.OneHotEncoder", "sklearn.preprocessing.OrdinalEncoder",
    "sklearn.preprocessing.LabelEncoder", "sklearn.preprocessing.LabelBinarizer",
    "sklearn.preprocessing.KBinsDiscretizer", "sklearn.preprocessing.PolynomialFeatures",
    "sklearn.impute.SimpleImputer", "sklearn.impute.MissingIndicator",
    "sklearn.decomposition.PCA", "sklearn.decomposition.TruncatedSVD",
    "sklearn.feature_selection.VarianceThreshold",
    "sklearn.linear_model.LogisticRegression", "sklearn.linear_model.LinearRegression",
    "sklearn.linear_model.Ridge", "sklearn.linear_model.RidgeClassifier", "sklearn.linear_model.Lasso",
    "sklearn.linear_model.ElasticNet", "sklearn.linear_model.SGDClassifier", "sklearn.linear_model.SGDRegressor",
    "sklearn.naive_bayes.GaussianNB", "sklearn.naive_bayes.BernoulliNB",
    "sklearn.tree.DecisionTreeClassifier", "sklearn.tree.DecisionTreeRegressor",
    "sklearn.tree.ExtraTreeClassifier", "sklearn.tree.ExtraTreeRegressor",   # the trees of ExtraTrees*
    "sklearn.ensemble.RandomForestClassifier", "sklearn.ensemble.RandomForestRegressor",
    "sklearn.ensemble.ExtraTreesClassifier", "sklearn.ensemble.ExtraTreesRegressor",
    "sklearn.ensemble.GradientBoostingClassifier", "sklearn.ensemble.GradientBoostingRegressor",
    "sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor",   # GradientBoosting's `init_`
)
# Internals the estimators above persist. `Tree` is not trusted by skops by default because its node
# arrays are indexed unchecked; mlgov checks every loaded Tree's structure (`_check_tree`) before use.
# HistGradientBoosting's TreePredictor and the KD/Ball trees of neighbours models have the same problem
# and no such check here, so they need an admin's trust.
INTERNALS = (
    "sklearn.tree._tree.Tree",
    "sklearn._loss.link.Interval", "sklearn._loss.link.IdentityLink", "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.LogLink", "sklearn._loss.link.HalfLogitLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.HalfMultinomialLoss", "sklearn._loss.loss.AbsoluteError", "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.PinballLoss", "sklearn._loss.loss.ExponentialLoss", "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyHalfMultinomialLoss", "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyHuberLoss", "sklearn._loss._loss.CyPinballLoss", "sklearn._loss._loss.CyExponentialLoss",
    "sklearn._loss._loss.CyHalfPoissonLoss",
    "sklearn.linear_model._sgd_fast.Hinge", "sklearn.linear_model._sgd_fast.SquaredHinge",
    "sklearn.linear_model._sgd_fast.ModifiedHuber", "sklearn.linear_model._sgd_fast.EpsilonInsensitive",
    "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
)
# Data containers: their loaders only read JSON, .npy (allow_pickle=False) or .npz from the archive.
CONTAINERS = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.set", "builtins.slice", "builtins.bytes",
    "builtins.bytearray", "collections.OrderedDict", "collections.defaultdict",
    "numpy.ndarray", "numpy.ma.MaskedArray", "numpy.dtype", "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
})
SPARSE = ("scipy.sparse.csr_matrix", "scipy.sparse.csc_matrix", "scipy.sparse.coo_matrix",
          "scipy.sparse.csr_array", "scipy.sparse.csc_array", "scipy.sparse.coo_array")
NUMPY_SCALARS = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                 "float32", "float64", "longdouble", "complex64", "complex128", "str_", "bytes_", "object_")
# Types that may appear as data (a dtype parameter, a dict's key type, a defaultdict factory): calling any
# of them on data only converts it.
TYPES_AS_DATA = frozenset({"builtins.str", "builtins.int", "builtins.float", "builtins.bool", "builtins.list",
                           "builtins.dict", "builtins.tuple", *(f"numpy.{s}" for s in NUMPY_SCALARS)})
# skops node kinds that rebuild a callable from the file.
CALLABLE_NODES = frozenset({"FunctionNode", "PartialNode", "MethodNode", "OperatorFuncNode"})
REDUCE_NODES = frozenset({"ReduceNode", "TreeNode", "LossNode"})


class ModelLoadError(ValueError):
    """The bytes are not a loadable model of the stated format (the message says what they look like)."""


class UntrustedModel(ModelLoadError):
    """The artifact needs an admin's trust; ``types`` names what was refused."""

    def __init__(self, message: str, types: list[str] | None = None) -> None:
        super().__init__(message)
        self.types = types or []


def check_digest(data: bytes, expected_sha256: str | None) -> None:
    if expected_sha256 is None:
        raise ModelLoadError("the version has no registered sha256 (registered through MLflow from a source mlgov "
                             "could not read), so mlgov cannot tell these bytes are the registered model")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise ModelLoadError(f"the artifact's sha256 is {actual}, the registry says {expected_sha256}; "
                             "it is not the registered model")


def load(data: bytes, fmt: str, *, trusted: bool) -> Any:
    """The model in ``data``; ``trusted`` is the admin's trust decision for exactly these bytes. A native format
    (XGBoost, LightGBM, ONNX) is checked in a child process and answered as a `sandbox.NativeModel`: its
    library never parses the bytes in this process (`clarify.sandbox` says why)."""
    if fmt not in FORMATS:
        raise ModelLoadError(f"model format {fmt!r} is not one of {', '.join(FORMATS)}")
    from clarify import sandbox

    if fmt in sandbox.NATIVE:
        if describe(data) not in _LOOKS[fmt]:
            raise _mismatch(fmt, describe(data))
        return sandbox.check(data, fmt)
    return load_here(data, fmt, trusted=trusted)


def load_here(data: bytes, fmt: str, *, trusted: bool = False) -> Any:
    """`load` in this process: what `clarify.sandbox`'s child runs for a native format."""
    try:
        return _load(data, fmt, trusted=trusted)
    except ModelLoadError:
        raise
    except ImportError as exc:
        raise ModelLoadError(f"the {fmt} loader is not installed on this server ({exc.name}); "
                             f"install it (pip install {exc.name})") from None
    except Exception as exc:   # the loaders' own parse errors: bad bytes, never a server fault
        raise ModelLoadError(f"model_format={fmt} expects {EXPECTED[fmt]}, but the bytes ({describe(data)}) "
                             f"could not be loaded: {_first_line(exc)}") from None


def refuse_external_data(data: bytes) -> None:
    """An ONNX model whose tensors all live in its own bytes. A tensor stored as "external data" names a file that
    onnxruntime reads (relative to the working directory; older releases took absolute paths and ``..`` too),
    and the model's outputs then give that file back: every tensor of every graph, subgraph, function and
    training graph is looked at, before onnxruntime sees the bytes."""
    import onnx
    from google.protobuf.message import DecodeError

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"model_format=onnx expects {EXPECTED['onnx']}, but the bytes could not be parsed: "
                             f"{_first_line(exc)}") from None
    graphs: list[Any] = [model.graph, *(g for t in model.training_info for g in (t.initialization, t.algorithm))]
    nodes: list[Any] = [n for f in model.functions for n in f.node]
    tensors: list[Any] = []

    def attributes(attrs: Any) -> None:
        for a in attrs:
            tensors.extend([a.t, *a.tensors])
            tensors.extend(x for s in (a.sparse_tensor, *a.sparse_tensors) for x in (s.values, s.indices))
            graphs.extend([a.g, *a.graphs])

    for f in model.functions:
        attributes(f.attribute_proto)
    while graphs or nodes:
        if graphs:
            g = graphs.pop()
            tensors.extend(g.initializer)
            tensors.extend(x for s in g.sparse_initializer for x in (s.values, s.indices))
            nodes.extend(g.node)
        else:
            attributes(nodes.pop().attribute)
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            where = next((e.value for e in t.external_data if e.key == "location"), "?")
            raise ModelLoadError(f"ONNX tensor {t.name or '(unnamed)'!r} is stored as external data (a file named "
                                 f"{where[:100]!r}): mlgov loads only models whose tensors are all inside the "
                                 "uploaded bytes; save it with save_as_external_data=False")


EXPECTED = {
    "skops": "a skops archive (skops.io.dump)",
    "xgboost": "an XGBoost model in JSON or UBJSON (Booster.save_model / save_raw)",
    "lightgbm": "a LightGBM text model (Booster.save_model / model_to_string)",
    "onnx": "an ONNX model (a serialized ModelProto)",
    "pickle": "a pickle stream",
    "joblib": "a joblib dump",
}


def describe(data: bytes) -> str:
    """What the bytes look like, from their first bytes, for error messages (never echoes them)."""
    head = data[:64]
    if not data:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive, as skops writes"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "a pickle stream"
    if head.startswith(b"tree\nversion="):
        return "a LightGBM text model"
    if head.startswith(b'{"learner"'):
        return "an XGBoost JSON model"
    if head[:1] in (b"{", b"[") and (len(head) == 1 or head[1:2] in b'"{[]} \t\r\n'):
        return "JSON"
    if head[:1] == b"{":
        return "UBJSON, as XGBoost writes"
    if head[:1] == b"\x08":   # protobuf field 1 (ir_version) as a varint: how every ONNX file begins
        return "a protobuf message, as ONNX writes"
    try:
        head.decode("utf-8")
        return "text" + (" (CSV-like)" if b"," in head and b"\n" in data[:4096] else "")
    except UnicodeDecodeError:
        return "binary data of no format mlgov recognises"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _mismatch(fmt: str, looks: str) -> ModelLoadError:
    return ModelLoadError(f"model_format={fmt} expects {EXPECTED[fmt]}, but the bytes look like {looks}")


_LOOKS = {"xgboost": ("UBJSON, as XGBoost writes", "an XGBoost JSON model", "JSON"),
          "lightgbm": ("a LightGBM text model",),
          "onnx": ("a protobuf message, as ONNX writes", "binary data of no format mlgov recognises")}
"""What `describe` may say of each native format's bytes."""


def _load(data: bytes, fmt: str, *, trusted: bool) -> Any:
    looks = describe(data)
    if fmt == "skops":
        if not data.startswith(b"PK\x03\x04"):
            raise _mismatch(fmt, looks)
        return load_skops(data, trusted=trusted)
    if fmt in _LOOKS and looks not in _LOOKS[fmt]:
        raise _mismatch(fmt, looks)
    if fmt == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(data))
        return booster
    if fmt == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_str=data.decode())
    if fmt == "onnx":
        refuse_external_data(data)
        import onnxruntime

        return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    if not trusted:
        raise UntrustedModel(f"{fmt} artifacts can run arbitrary code when loaded; an admin must mark this "
                             "version's artifact as trusted first", [fmt])
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    import pickle

    return pickle.loads(data)  # noqa: S301 - only after an audited admin trust decision


# --- skops -------------------------------------------------------------------------------------------------

@dataclass
class Inventory:
    """Every type a skops file names, by the role it plays when loaded."""

    instances: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    callables: set[str] = field(default_factory=set)
    trees: list[Any] = field(default_factory=list)   # TreeNodes, to check their arrays after construction

    def refused(self) -> dict[str, list[str]]:
        allowed = allowed_instances()
        out = {"callables stored as data": sorted(self.callables),
               "classes outside the allow-list": sorted(self.instances - allowed),
               "types stored as data outside the allow-list": sorted(self.types - TYPES_AS_DATA)}
        return {k: v for k, v in out.items() if v}

    def names(self) -> list[str]:
        return sorted(self.instances | self.types | self.callables)


@functools.cache
def allowed_instances() -> frozenset[str]:
    """``ESTIMATORS`` and ``SPARSE`` as skops names them (defining module), plus the fixed lists."""
    from skops.io._utils import get_type_name

    resolved = set()
    for path in (*ESTIMATORS, *SPARSE):
        module, _, name = path.rpartition(".")
        try:
            resolved.add(get_type_name(getattr(importlib.import_module(module), name)))
        except (ImportError, AttributeError):   # not in this version of scikit-learn/SciPy: nothing to allow
            continue
    numpy_scalars = {f"numpy.{s}" for s in NUMPY_SCALARS}   # NumPy scalars persist as 0-d arrays
    return frozenset(resolved | set(INTERNALS) | CONTAINERS | numpy_scalars)


def inventory(tree: Any) -> Inventory:
    """Walk a skops node tree (nothing built, nothing imported) and sort every type name it holds."""
    from skops.io._audit import Node

    inv = Inventory()
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(tree, "instance")]
    while stack:
        node, role = stack.pop()
        if isinstance(node, list):
            stack.extend((v, "instance") for v in node)
            continue
        if isinstance(node, dict):
            stack.extend((v, "instance") for v in node.values())
            continue
        if isinstance(node, type):   # a type a node keeps as a child: treat as data
            inv.types.add(f"{node.__module__}.{node.__name__}")
            continue
        if not isinstance(node, Node) or id(node) in seen:
            continue   # str/BytesIO children are raw content
        seen.add(id(node))
        kind = type(node).__name__
        name = f"{node.module_name}.{node.class_name}"
        if kind == "JsonNode":   # built by json.loads: its type name is never used
            continue
        if kind == "CachedNode":
            stack.append((node.cached, role))
            continue
        if kind in CALLABLE_NODES:
            inv.callables.add(f"{name}.{node.func}" if kind == "MethodNode" else name)
        elif kind == "TypeNode" and role == "constructor":
            inv.instances.add(name)
        elif kind == "TypeNode":   # skops keeps builtin functions (exec, eval) as TypeNodes too
            (inv.callables if _is_function(node.module_name, node.class_name) else inv.types).add(name)
        else:
            inv.instances.add(name)
        if kind == "TreeNode":
            inv.trees.append(node)
        for key, child in node.children.items():
            stack.append((child, "constructor" if kind in REDUCE_NODES and key == "constructor" else "instance"))
    return inv


def _is_function(module: str, name: str) -> bool:
    """A name that is a callable but not a class, looked up only in modules already imported."""
    obj = getattr(sys.modules.get(module), name, None)
    return obj is not None and callable(obj) and not isinstance(obj, type)


def load_skops(data: bytes, *, trusted: bool) -> Any:
    """Audit the whole file against the allow-lists, then build it (skops' own audit runs as well)."""
    from skops.io._audit import audit_tree, get_tree
    from skops.io._utils import read_schema

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema, context = read_schema(archive)
            tree = get_tree(schema, context, trusted=None)
            inv = inventory(tree)
            refused = inv.refused()
            if refused and not trusted:
                listed = "; ".join(f"{k}: {', '.join(v[:10])}" for k, v in refused.items())
                raise UntrustedModel(f"the skops file holds types mlgov does not load without an admin's trust "
                                     f"({listed})", sorted({t for v in refused.values() for t in v}))
            audit_tree(tree, trusted=inv.names())
            model = tree.construct()
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"not a loadable skops file: {_first_line(exc)}") from None
    for node in inv.trees:
        _check_tree(node.construct())
    if inv.trees:
        _check_tree_models(model)
    return model


def _check_tree(tree: Any) -> None:
    """A decision tree's arrays index each other unchecked in scikit-learn's C code: make sure every child
    index points forward inside the tree (no cycle, no out-of-bounds read) and every split names a feature."""
    n = int(tree.node_count)
    left, right, feature = (np.asarray(a) for a in (tree.children_left, tree.children_right, tree.feature))
    idx = np.arange(n)
    if not (len(left) == len(right) == len(feature) == n and tree.value.shape[0] == n):
        raise ModelLoadError("a decision tree in the skops file has arrays of inconsistent length")
    leaf = (left == -1) & (right == -1)
    split = (left > idx) & (left < n) & (right > idx) & (right < n) & (feature >= 0) & (feature < tree.n_features)
    if n == 0 or not np.all(leaf | split):
        raise ModelLoadError("a decision tree in the skops file has child or feature indices outside the tree; "
                             "the file is corrupt or crafted")


def _objects(root: Any) -> list[Any]:
    """Every object reachable from a loaded model through attributes, containers and object arrays."""
    seen: set[int] = set()
    out, stack = [], [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | type(None)):
            continue
        seen.add(id(obj))
        out.append(obj)
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
        elif type(obj).__module__.startswith("sklearn.") and hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return out


def _check_tree_models(model: Any) -> None:
    """scikit-learn's tree code trusts the owning estimator: it checks the input's width against the
    estimator's ``n_features_in_`` (ensembles: the first tree's) and then reads columns by the tree's own
    indices, and gradient boosting writes each stage's output by column without bounds checks. So every tree
    must be as wide as its estimator and ensemble, and boosting's stages as many as its outputs."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor

    trees = (DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor)
    ensembles = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor,
                 GradientBoostingClassifier, GradientBoostingRegressor)
    bad = "a tree model in the skops file is inconsistent ({}); the file is corrupt or crafted"
    for obj in _objects(model):
        if isinstance(obj, trees) and hasattr(obj, "tree_"):
            width = getattr(obj, "n_features_in_", None)
            if not isinstance(width, int) or getattr(obj.tree_, "n_features", None) != width:
                raise ModelLoadError(bad.format(f"{type(obj).__name__} declares {width} features, its tree "
                                                f"{getattr(obj.tree_, 'n_features', None)}"))
        if isinstance(obj, ensembles) and hasattr(obj, "estimators_"):
            width = getattr(obj, "n_features_in_", None)
            members = list(np.asarray(obj.estimators_, dtype=object).ravel())
            if not isinstance(width, int) or not members or any(
                    not isinstance(m, trees) or getattr(m, "n_features_in_", None) != width for m in members):
                raise ModelLoadError(bad.format(f"the trees of a {type(obj).__name__} are not all "
                                                f"{width} features wide"))
        if isinstance(obj, GradientBoostingClassifier | GradientBoostingRegressor) and hasattr(obj, "estimators_"):
            stages = np.asarray(obj.estimators_, dtype=object)
            try:   # the init estimator's raw output (NumPy only) must have one column per tree of a stage
                init = obj._raw_predict_init(np.zeros((1, obj.n_features_in_)))
            except Exception as exc:
                raise ModelLoadError(bad.format(f"its initial estimator fails: {_first_line(exc)}")) from None
            if stages.ndim != 2 or init.shape != (1, stages.shape[1]):
                raise ModelLoadError(bad.format(f"{stages.shape} stages for raw predictions of shape {init.shape}"))
