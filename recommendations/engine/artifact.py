"""Model artifacts as arrays and JSON, never pickle: reading a stored model cannot execute code.

An artifact is one ``.npz`` archive (``numpy.savez``; read back with ``allow_pickle=False``). Its
``manifest`` member is UTF-8 JSON describing the object tree; every array of the tree is a member
of the archive, referenced from the manifest by name. What the manifest may describe:

- JSON values (dicts with string keys, lists, numbers, strings, booleans, null);
- ``{"@a": name}``: a numpy array of a plain dtype (object arrays of strings are stored as unicode
  and come back as object arrays of ``str``);
- ``{"@csr": name}``: a scipy CSR matrix (data, indices, indptr, shape);
- ``{"@obj": class, "fields": {...}}``: an instance of one of the engine's classes named in
  :data:`ALLOWED` (created without calling its constructor, then its fields set);
- ``{"@ref": name}``: the bundle's recommender of that name (the hybrid refers to its components);
- ``{"@trees": ...}``: a fitted gradient-boosting ranker as its tree node arrays
  (:class:`BoostedTrees`), ``{"@hnsw": name}``: an hnswlib index in its own binary format.

Anything else in a manifest (an unknown class, a malformed reference) is refused with ValueError.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import zipfile

import numpy as np
import scipy.sparse as sp

MAGIC = "cdp-recs-artifact"
ARTIFACT_FORMAT = 2

# engine classes an artifact may instantiate, by "<module>.<class>"; filled by ``allow``
ALLOWED: dict[str, type] = {}


def allow(cls: type) -> type:
    """Register an engine class as one an artifact may contain (a class decorator)."""
    ALLOWED[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


class BoostedTrees:
    """A binary gradient-boosted classifier's trees (scikit-learn's HistGradientBoostingClassifier
    fitted on numeric features), as scikit-learn's own node arrays.

    Prediction walks the trees in numpy, every tree and every row at once, with scikit-learn's
    rule (``x <= threshold`` goes left, a missing value where the node says): a web process that
    serves the ranker never imports scikit-learn, which with what it pulls in (scipy.stats, pandas,
    joblib) is about 110 MB of every worker's memory."""

    def __init__(self, *, baseline: float, nodes: list[np.ndarray], n_features: int) -> None:
        self.baseline = float(baseline)
        self.nodes = nodes
        self.n_features = int(n_features)
        self._forest: tuple | None = None

    @classmethod
    def from_sklearn(cls, model) -> BoostedTrees:
        if len(model.classes_) != 2 or getattr(model, "is_categorical_", None) is not None:
            raise ValueError("Only binary classifiers on numeric features are stored as trees.")
        nodes = [np.array(p[0].nodes) for p in model._predictors]
        return cls(
            baseline=float(np.ravel(model._baseline_prediction)[0]), nodes=nodes, n_features=model.n_features_in_
        )

    def _flat(self) -> tuple:
        """Every tree's nodes in one table of a few thousand rows, each node twice (positions 2k and
        2k + 1; the next position is ``child[position + goes_left]``): its feature column (the
        column of a copy of X where a missing value goes left, when the node sends missing values
        left), its threshold, its children (a leaf is its own child) and its value; the roots'
        positions; the deepest leaf's depth."""
        if self._forest is None:
            sizes = np.array([len(n) for n in self.nodes], dtype=np.int64)
            roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            table = np.concatenate(self.nodes) if self.nodes else None
            if table is None or len(table) == 0:
                empty = np.zeros(0, np.int64)
                self._forest = (roots, empty, np.zeros(0), empty, np.zeros(0), np.zeros(0, bool), 0)
                return self._forest
            leaf = table["is_leaf"].astype(bool)
            if table["is_categorical"][~leaf].any():
                raise ValueError("A stored ranker has categorical splits; refresh the model.")
            here = np.arange(len(table), dtype=np.int64)
            shift = np.repeat(roots, sizes)
            left = np.where(leaf, here, table["left"].astype(np.int64) + shift)
            right = np.where(leaf, here, table["right"].astype(np.int64) + shift)
            feature = np.where(leaf, 0, table["feature_idx"]).astype(np.int64)
            column = np.where(table["missing_go_to_left"].astype(bool), feature + self.n_features, feature)
            # thresholds within the finite range: +inf (only missing values go right) still lets every
            # number go left once numbers are clipped to the same range (see predict_proba)
            threshold = np.clip(table["num_threshold"].astype(np.float64), -_BIG, _BIG)
            self._forest = (
                2 * roots,
                np.repeat(column, 2),
                np.repeat(threshold, 2),
                2 * np.stack([right, left], axis=1).ravel(),
                np.repeat(table["value"].astype(np.float64), 2),
                np.repeat(leaf, 2),
                int(table["depth"].max()),
            )
        return self._forest

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(positive) per row (the second column of scikit-learn's ``predict_proba``), bit for bit:
        the same comparisons (``x <= threshold`` goes left; a missing value goes where the node
        says), the leaves' values added tree by tree onto the baseline in the same order."""
        X = np.asarray(X, dtype=np.float64)
        roots, column, threshold, child, value, leaf, depth = self._flat()
        n = len(X)
        raw = np.full(n, self.baseline)
        if n and len(roots):
            # two copies of X side by side, numbers clipped to the finite range: a missing value is
            # +inf in the first (never <= a threshold: it goes right) and -inf in the second (left)
            missing = np.isnan(X)
            clipped = np.clip(X, -_BIG, _BIG)
            both = np.concatenate([np.where(missing, np.inf, clipped), np.where(missing, -np.inf, clipped)], axis=1)
            flat = both.ravel()
            position = np.repeat(roots, n)  # tree by tree, each tree's rows in order
            start = np.tile(np.arange(n, dtype=np.int64) * both.shape[1], len(roots))
            final, walking = position, None
            for level in range(depth):
                goes_left = flat.take(start + column.take(position)) <= threshold.take(position)
                position = child.take(position + goes_left)
                if level >= 3:  # most rows reach a leaf within a few levels: walk on with the others
                    going = np.flatnonzero(~leaf.take(position))
                    if walking is None:
                        final, walking = position.copy(), going
                    else:
                        final[walking] = position
                        walking = walking[going]
                    position, start = position[going], start[going]
                    if len(walking) == 0:
                        break
            if walking is not None:
                final[walking] = position
            else:
                final = position
            # tree after tree onto the baseline, as scikit-learn adds them: a running sum down the
            # trees (``cumsum`` adds strictly in order) instead of one Python step per tree
            steps = np.empty((len(roots) + 1, n))
            steps[0] = raw
            value.take(final, out=steps[1:].reshape(-1))
            raw = np.cumsum(steps, axis=0)[-1]
        return 1.0 / (1.0 + np.exp(-raw))


_BIG = float(np.finfo(np.float64).max)


class _Writer:
    def __init__(self, refs: dict[int, str]) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.refs = refs

    def add(self, value: np.ndarray) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = value
        return name

    def encode(self, value, top: bool = False):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, float)):
            return value if not isinstance(value, float) or np.isfinite(value) else {"@f": repr(value)}
        if isinstance(value, np.generic):
            return self.encode(value.item())
        if not top and id(value) in self.refs:
            return {"@ref": self.refs[id(value)]}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                text = np.asarray([str(v) for v in value.ravel()], dtype=str).reshape(value.shape)
                if text.size and all(v.isascii() for v in text.ravel()):  # a quarter of the bytes
                    return {"@b": self.add(text.astype(np.bytes_))}
                return {"@s": self.add(text)}
            return {"@a": self.add(value)}
        if sp.issparse(value):
            m = sp.csr_matrix(value)
            return {
                "@csr": [self.add(m.data), self.add(m.indices), self.add(m.indptr)],
                "shape": list(m.shape),
                # checked here, once: a reader that maps the file does not scan every index for it
                "canonical": bool(m.has_canonical_format),
            }
        if isinstance(value, BoostedTrees):
            return {
                "@trees": [self.add(n) for n in value.nodes],
                "baseline": value.baseline,
                "n_features": value.n_features,
            }
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError(f"Artifact dicts need string keys: {list(value)[:3]}")
            return {"@d": {k: self.encode(v) for k, v in value.items()}}
        if isinstance(value, (list, tuple)):
            return [self.encode(v) for v in value]
        if getattr(value, "__artifact__", None) == "hnsw":
            return {"@hnsw": self.add(value.to_array()), **value.meta()}
        key = f"{type(value).__module__}.{type(value).__qualname__}"
        if ALLOWED.get(key) is type(value):
            state = vars(value)
            fields = {k: self.encode(v) for k, v in state.items() if not k.startswith("_cache")}
            return {"@obj": key, "fields": fields}
        raise TypeError(f"Cannot store {key} in a model artifact.")


class _Reader:
    def __init__(self, arrays, refs: dict[str, object]) -> None:
        self.arrays = arrays
        self.refs = refs
        self.pending: list[tuple[dict, str, str]] = []

    def array(self, name) -> np.ndarray:
        if not isinstance(name, str) or name == "manifest" or name not in self.arrays:
            raise ValueError(f"Artifact refers to a missing array {name!r}.")
        return self.arrays[name]

    def decode(self, value):
        if value is None or isinstance(value, (bool, str, int, float)):
            return value
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict) or len(value) == 0:
            raise ValueError("Malformed artifact manifest.")
        if "@d" in value:
            return {k: self.decode(v) for k, v in value["@d"].items()}
        if "@f" in value:
            return float(value["@f"])
        if "@a" in value:
            return self.array(value["@a"])
        if "@s" in value:
            return self.array(value["@s"]).astype(object)
        if "@b" in value:
            raw = self.array(value["@b"])
            return np.array([v.decode("ascii") for v in raw.ravel()], dtype=object).reshape(raw.shape)
        if "@csr" in value:
            data, indices, indptr = (self.array(n) for n in value["@csr"])
            matrix = sp.csr_matrix((data, indices, indptr), shape=tuple(value["shape"]))
            if value.get("canonical"):
                matrix.has_canonical_format = True  # sorted, no duplicates: as written
            return matrix
        if "@trees" in value:
            return BoostedTrees(
                baseline=value["baseline"],
                nodes=[self.array(n) for n in value["@trees"]],
                n_features=value["n_features"],
            )
        if "@hnsw" in value:
            from recommendations.engine.ann import ItemIndex

            return ItemIndex.from_array(self.array(value["@hnsw"]), value)
        if "@ref" in value:
            return _Ref(value["@ref"])
        if "@obj" in value:
            cls = ALLOWED.get(value["@obj"])
            if cls is None:
                raise ValueError(f"Artifact names a class that is not an engine class: {value['@obj']!r}.")
            obj = cls.__new__(cls)
            fields = {k: self.decode(v) for k, v in value["fields"].items()}
            obj.__dict__.update(fields)
            return obj
        raise ValueError(f"Malformed artifact manifest entry: {sorted(value)[:3]}")


class _Ref:
    def __init__(self, name: str) -> None:
        self.name = name


def resolve_refs(obj, recommenders: dict[str, object], seen: set[int] | None = None) -> None:
    """Replace the ``@ref`` placeholders inside ``obj``'s fields by the bundle's recommenders."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, list):
        items = enumerate(obj)
    else:
        items = obj.items() if isinstance(obj, dict) else vars(obj).items() if hasattr(obj, "__dict__") else ()
    for key, value in list(items):
        if isinstance(value, _Ref):
            if value.name not in recommenders:
                raise ValueError(f"Artifact refers to an unknown recommender {value.name!r}.")
            target = recommenders[value.name]
            if isinstance(obj, (dict, list)):
                obj[key] = target
            else:
                setattr(obj, key, target)
        elif isinstance(value, (dict, list)) or (hasattr(value, "__dict__") and type(value) in ALLOWED.values()):
            resolve_refs(value, recommenders, seen)


def dump(tree: dict, recommenders: dict[str, object]) -> bytes:
    """``tree`` (a dict) and the named ``recommenders`` as npz bytes; a recommender met again inside
    another one (the hybrid's components) is stored as a reference to its name."""
    writer = _Writer({id(rec): name for name, rec in recommenders.items()})
    manifest = {
        "magic": MAGIC,
        "format": ARTIFACT_FORMAT,
        "tree": {k: writer.encode(v) for k, v in tree.items()},
        "recommenders": {name: writer.encode(rec, top=True) for name, rec in recommenders.items()},
    }
    buffer = io.BytesIO()
    payload = json.dumps(manifest, separators=(",", ":")).encode()
    np.savez(buffer, manifest=np.frombuffer(payload, dtype=np.uint8), **writer.arrays)
    return buffer.getvalue()


def load_field(blob: bytes, obj: str, name: str):
    """One field of one object of the tree (``tree[obj].name``), decoding only that field's arrays."""
    archive, manifest = _open(blob)
    entry = manifest["tree"].get(obj)
    if not isinstance(entry, dict) or "fields" not in entry or name not in entry["fields"]:
        raise ValueError(f"The artifact has no {obj}.{name}.")
    return _Reader(archive, {}).decode(entry["fields"][name])


def _open(blob: bytes):
    try:
        archive = np.load(io.BytesIO(blob), allow_pickle=False)
        manifest = json.loads(bytes(archive["manifest"]).decode())
    except Exception as exc:
        raise ValueError(f"Not a recommendations model artifact ({type(exc).__name__}).") from exc
    _check(manifest)
    return archive, manifest


def _check(manifest) -> None:
    if not isinstance(manifest, dict) or manifest.get("magic") != MAGIC:
        raise ValueError("Not a recommendations model artifact.")
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"Artifact format {manifest.get('format')} is not {ARTIFACT_FORMAT}; refresh the model.")


def write(path: str, blob: bytes) -> None:
    """An artifact's bytes as a file, atomically (a reader never sees half of it)."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(blob)
    os.replace(tmp, path)


class _Mapped(dict):
    """The members of an npz file on disk as read-only memory maps (``numpy.savez`` stores members
    uncompressed, so each one is a ``.npy`` at a known offset of the file): the operating system
    pages them in when read and shares the pages between processes that map the same file."""

    def __init__(self, path: str) -> None:
        super().__init__()
        with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                    raise ValueError("Not a recommendations model artifact (compressed member).")
                fh.seek(info.header_offset)
                local = fh.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise ValueError("Not a recommendations model artifact (bad zip member).")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                start = info.header_offset + 30 + name_len + extra_len
                fh.seek(start)
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"Artifact member of .npy version {version}.")
                if dtype.hasobject:
                    raise ValueError("Artifact arrays may not hold Python objects.")
                offset = fh.tell()
                name = info.filename[: -len(".npy")]
                if int(np.prod(shape)) == 0 or dtype.itemsize == 0:
                    self[name] = np.zeros(shape, dtype=dtype)
                else:
                    order = "F" if fortran else "C"
                    # a plain ndarray view (the map stays alive through it): no memmap subclass per operation
                    self[name] = np.asarray(
                        np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
                    )


def load_path(path: str) -> tuple[dict, dict]:
    """(tree, recommenders) of an artifact file, its arrays memory-mapped (read-only, shared)."""
    try:
        arrays = _Mapped(path)
        manifest = json.loads(bytes(np.asarray(arrays["manifest"])).decode())
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"Not a recommendations model artifact ({type(exc).__name__}).") from exc
    _check(manifest)
    return _decode(arrays, manifest)


def load(blob: bytes) -> tuple[dict, dict]:
    """(tree, recommenders) as stored by ``dump``, references resolved."""
    archive, manifest = _open(blob)
    return _decode(archive, manifest)


def _decode(archive, manifest: dict) -> tuple[dict, dict]:
    reader = _Reader(archive, {})
    tree = {k: reader.decode(v) for k, v in manifest["tree"].items()}
    recommenders = {k: reader.decode(v) for k, v in manifest["recommenders"].items()}
    for rec in recommenders.values():
        resolve_refs(rec, recommenders)
    return tree, recommenders
