"""Mutation testing of the statistics, samplers, evaluation loop and scorers (mutmut 3).

Not part of CI (minutes on 2 cores). For each module group below, a scratch copy of ``fewmm/``
and of a FAST targeted test selection is made, mutmut mutates only that module, and every mutant
runs only the selected tests that reach the mutated function (mutmut records which tests call
which function in a first clean run, then forks one worker per mutant from a warm process:
seconds per mutant). The kill rate per module and every surviving mutant, with the reason it is
harmless (an equivalent mutant) or "UNEXPLAINED", are written to ``results/mutation.json`` and
``results/mutation.md``.

Usage::

    pip install -c constraints.txt "mutmut==3.8.1"      # or: pip install -e ".[mutation]"
    python benchmarks/mutation.py                        # all modules
    python benchmarks/mutation.py metrics episodes       # some
    python benchmarks/mutation.py --jobs 2 --workdir /tmp/fewmm-mutation

Exit code 1 when a module is below ``--target`` (default 0.90) or a survivor is unexplained.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: module group -> (files to mutate, fast test files that exercise them, extra pytest arguments).
#: The torch.compile test of test_methods.py is left out (a mutant of the compiled function would
#: recompile for minutes); tests/test_evaluate.py runs the same compiled-path code eagerly.
FAST = ["-k", "not compiled_protonet_matches_default_path"]
MODULES = {
    "metrics": (["fewmm/metrics.py"], ["tests/test_metrics.py", "tests/test_references.py"], []),
    "episodes": (["fewmm/episodes.py"], ["tests/test_episodes.py", "tests/test_episodes_properties.py"], []),
    "evaluate": (["fewmm/evaluate.py"], ["tests/test_evaluate.py", "tests/test_references.py"], []),
    "methods": (["fewmm/methods/*"], ["tests/test_methods.py", "tests/test_method_details.py", "tests/test_references.py",
                                      "tests/test_evaluate.py", "tests/test_method_params.py", "tests/test_sklearn.py", "tests/test_method_checks.py", "tests/test_meta_methods.py",
                                      "tests/test_transfer.py", "tests/test_mahalanobis_text.py"], FAST),
}

#: Surviving mutants that are harmless, keyed by (function, source line, mutated line) with
#: whitespace stripped, so the key survives renumbering. Each says why the mutant is equivalent.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("check_label_types", "if isinstance(y, torch.Tensor) or (isinstance(y, np.ndarray) and y.dtype != object):",
     "if isinstance(y, torch.Tensor) and (isinstance(y, np.ndarray) and y.dtype != object):"):
        "The early return only skips work: a tensor or a typed numpy array holds one kind of value, so going on "
        "(np.asarray(y, dtype=object) of it) finds a single kind and returns without error as well.",
    ("check_label_types", "values = np.asarray(y, dtype=object).reshape(-1)", "values = np.asarray(y, dtype=object).reshape(-2)"):
        "numpy reads any negative size as the one unknown dimension: reshape(-2) == reshape(-1) (checked on numpy 2.x).",
    ("LinearProbe._fit", "if self.basis_.shape[1] == 0 or not bool(s[0] > 0):  # every support row is zero: no direction to fit",
     "if self.basis_.shape[1] == 0 or not bool(s[0] >= 0):  # every support row is zero: no direction to fit"):
        "Singular values are >= 0, so `not s[0] >= 0` is always False; the all-zero support is still caught by the "
        "first test (s > s[0] * 1e-7 keeps no direction when s[0] == 0, so the basis has 0 columns: "
        "test_linear_probe_fits_orthonormal_support_rows checks the error).",
    ("wilson_interval", "return 100.0 * p, 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)",
     "return 100.0 * p, 100.0 * max(0.0, centre - half), 100.0 * min(2.0, centre + half)"):
        "The Wilson upper bound never exceeds 1 (it equals 1 exactly only at k = n, where floating point rounds it "
        "to <= 1: checked for every n < 3000), so clamping at 1 or at 2 gives the same value.",
    ("paired_difference", "a = np.asarray(a, dtype=np.float64).ravel()", "a = np.asarray(a, dtype=None).ravel()"):
        "Only one of the two operands stays un-converted; numpy promotes it to float64 in `a - b` because the other "
        "is float64, so the difference is computed exactly as if both were converted first (bool, integer, float16/32 "
        "inputs; both un-converted is killed by test_float32_input_is_computed_in_float64).",
    ("paired_difference", "a = np.asarray(a, dtype=np.float64).ravel()", "a = np.asarray(a, ).ravel()"):
        "Only one of the two operands stays un-converted; numpy promotes it to float64 in `a - b` because the other "
        "is float64, so the difference is computed exactly as if both were converted first (bool, integer, float16/32 "
        "inputs; both un-converted is killed by test_float32_input_is_computed_in_float64).",
    ("paired_difference", "b = np.asarray(b, dtype=np.float64).ravel()", "b = np.asarray(b, dtype=None).ravel()"):
        "Only one of the two operands stays un-converted; numpy promotes it to float64 in `a - b` because the other "
        "is float64, so the difference is computed exactly as if both were converted first (bool, integer, float16/32 "
        "inputs; both un-converted is killed by test_float32_input_is_computed_in_float64).",
    ("paired_difference", "b = np.asarray(b, dtype=np.float64).ravel()", "b = np.asarray(b, ).ravel()"):
        "Only one of the two operands stays un-converted; numpy promotes it to float64 in `a - b` because the other "
        "is float64, so the difference is computed exactly as if both were converted first (bool, integer, float16/32 "
        "inputs; both un-converted is killed by test_float32_input_is_computed_in_float64).",
    ("sample_episodes", "ep_cls_pos = np.argsort(rng.random((n_episodes, pool.size)), axis=1)[:, :n_way]",
     "ep_cls_pos = np.argsort(rng.random((n_episodes, pool.size)), )[:, :n_way]"):
        "argsort's default axis is -1, the last axis, which is axis 1 of this 2-d array: the same call.",
    ("sample_episodes", "pick = np.argsort(keys, axis=2)[..., :need]  # (E, N, K+Q) positions within class",
     "pick = np.argsort(keys, )[..., :need]  # (E, N, K+Q) positions within class"):
        "argsort's default axis is -1, the last axis, which is axis 2 of this 3-d array: the same call.",
    ("sample_episodes", "keys[np.arange(max_count)[None, None, :] >= c_counts[..., None]] = 2.0  # padding sorts last",
     "keys[np.arange(max_count)[None, None, :] >= c_counts[..., None]] = 3.0  # padding sorts last"):
        "The real keys are uniform in [0, 1); any padding value >= 1 sorts after all of them, 2.0 or 3.0 alike.",
    ("sample_episodes", "keys[np.arange(max_count)[None, None, :] >= c_counts[..., None]] = 2.0  # padding sorts last",
     "keys[np.arange(max_count)[None, None, :] >= c_counts[..., None]] = None  # padding sorts last"):
        "None assigned into a float array is NaN, and numpy's argsort puts NaN after every number: padding still sorts last.",
    ("sample_episodes", "pool = np.unique(np.asarray(classes, dtype=np.int64))", "pool = np.unique(np.asarray(classes, dtype=None))"):
        "For the integer class lists this accepts (any non-integer class is not found among the labels and raises), the "
        "pool keeps an integer dtype either way; it is used for searchsorted/indexing and the classes are cast to int64 "
        "on output.",
    ("sample_episodes", "pool = np.unique(np.asarray(classes, dtype=np.int64))", "pool = np.unique(np.asarray(classes, ))"):
        "Same as dtype=None (asarray's default): integer class lists keep an integer dtype; output cast to int64.",
    ("kshot_splits", "sup.append(np.sort(rng.choice(members, size=n_shot, replace=False)))",
     "sup.append(np.sort(rng.choice(members, size=n_shot, replace=None)))"):
        "Generator.choice tests `replace` for truth; None is falsy like False: the same draws (checked).",
    ('_protonet_argmax', 'logits = 2.0 * dots - row_sq[qry_idx].unsqueeze(2) - p2.unsqueeze(1)',
     'logits = 2.0 * dots + row_sq[qry_idx].unsqueeze(2) - p2.unsqueeze(1)'):
        "The query's own squared norm is the same for every class of its row; adding or subtracting it does not move the argmax (the function returns only the argmax).",
    ('_row_sq_norms', 'block = max(1, block_bytes // max(1, d * feats.element_size()))',
     'block = max(2, block_bytes // max(1, d * feats.element_size()))'):
        "Only the number of rows per pass changes (or only for d * itemsize < 2); every row's norm is the same reduction over the same row.",
    ('_row_sq_norms', 'block = max(1, block_bytes // max(1, d * feats.element_size()))',
     'block = max(1, block_bytes // max(2, d * feats.element_size()))'):
        "Only the number of rows per pass changes (or only for d * itemsize < 2); every row's norm is the same reduction over the same row.",
    ('_row_sq_norms', 'out = torch.empty(n, dtype=feats.dtype, device=feats.device)',
     'out = torch.empty(n, dtype=feats.dtype, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('_row_sq_norms', 'out = torch.empty(n, dtype=feats.dtype, device=feats.device)',
     'out = torch.empty(n, dtype=feats.dtype, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('_row_sq_norms', 'buf = torch.empty((min(block, n), d), dtype=feats.dtype, device=feats.device)',
     'buf = torch.empty((min(block, n), d), dtype=feats.dtype, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('_row_sq_norms', 'buf = torch.empty((min(block, n), d), dtype=feats.dtype, device=feats.device)',
     'buf = torch.empty((min(block, n), d), dtype=feats.dtype, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('_row_sq_norms', 'for s in range(0, n, block):',
     'for s in range(0, n, ):'):
        "Step 1 instead of one block: the blocks overlap and each row's norm is computed again, identically, into the same place (slower, same values).",
    ('_row_sq_norms', 'sq = torch.mul(x, x, out=buf[: x.shape[0]])',
     'sq = torch.mul(x, x, out=None)'):
        'Writes the squares to a fresh tensor instead of the reused buffer: the same values (memory use only).',
    ('_row_sq_norms', 'sq = torch.mul(x, x, out=buf[: x.shape[0]])',
     'sq = torch.mul(x, x, )'):
        'Writes the squares to a fresh tensor instead of the reused buffer: the same values (memory use only).',
    ('_row_sq_norms', 'torch.sum(sq, dim=-1, out=out[s : s + x.shape[0]])',
     'torch.sum(sq, dim=+1, out=out[s : s + x.shape[0]])'):
        'sq is 2-d: dim 1 is dim -1.',
    ('_checked_features', 'and features.shape[0] > 0',
     'and features.shape[0] > 1'):
        'A one-row table then takes the full check instead of the fast one; both return the same tensor (the fast path only skips work).',
    ('_checked_features', 'and features.shape[0] > 0',
     'and features.shape[1] > 0'):
        'Tables with rows and 0 columns then take the full check, which returns the same tensor; tables with 0 rows still take the full check and raise (tested).',
    ('evaluate_episodes', 'if device is not None:',
     'if device is None:'):
        "Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite. (feats.to(None) and feats.to('cpu') leave a CPU tensor where it is.)",
    ('evaluate_episodes', 'feats = feats.to(device)',
     'feats = feats.to(None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'sup_idx = torch.as_tensor(episodes.support.reshape(e, -1), device=dev)',
     'sup_idx = torch.as_tensor(episodes.support.reshape(e, -1), device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'sup_idx = torch.as_tensor(episodes.support.reshape(e, -1), device=dev)',
     'sup_idx = torch.as_tensor(episodes.support.reshape(e, -1), )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'sup_idx = torch.as_tensor(episodes.support.reshape(e, -1), device=dev)',
     'sup_idx = torch.as_tensor(episodes.support.reshape(e, -2), device=dev)'):
        "numpy's reshape treats any negative size as the one inferred dimension: -2 is -1.",
    ('evaluate_episodes', 'qry_idx = torch.as_tensor(episodes.query.reshape(e, -1), device=dev)',
     'qry_idx = torch.as_tensor(episodes.query.reshape(e, -1), device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'qry_idx = torch.as_tensor(episodes.query.reshape(e, -1), device=dev)',
     'qry_idx = torch.as_tensor(episodes.query.reshape(e, -1), )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'qry_idx = torch.as_tensor(episodes.query.reshape(e, -1), device=dev)',
     'qry_idx = torch.as_tensor(episodes.query.reshape(e, -2), device=dev)'):
        "numpy's reshape treats any negative size as the one inferred dimension: -2 is -1.",
    ('evaluate_episodes', 'target = torch.arange(n, device=dev).repeat_interleave(q)',
     'target = torch.arange(n, device=None).repeat_interleave(q)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'target = torch.arange(n, device=dev).repeat_interleave(q)',
     'target = torch.arange(n, ).repeat_interleave(q)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'preds = torch.empty((e, n * q), dtype=torch.int64, device=dev)',
     'preds = torch.empty((e, n * q), dtype=torch.int64, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'preds = torch.empty((e, n * q), dtype=torch.int64, device=dev)',
     'preds = torch.empty((e, n * q), dtype=torch.int64, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'if m < c:  # pad to the one compiled shape with copies of the first episode',
     'if m <= c:  # pad to the one compiled shape with copies of the first episode'):
        'For a full chunk (m == c) the padding adds c - m = 0 copies: the same tensors.',
    ('evaluate_episodes', 'c = resolve_chunk_size(chunk_size, episodes, d, dev, feats.element_size())',
     'c = resolve_chunk_size(chunk_size, episodes, d, None, feats.element_size())'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'c = resolve_chunk_size(chunk_size, episodes, d, dev, feats.element_size())',
     'c = resolve_chunk_size(chunk_size, episodes, d, dev, )'):
        'itemsize defaults to 4, the element size of the float32 table every input is converted to.',
    ('evaluate_episodes', 'sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=dev)',
     'sup_buf = torch.empty((c * n * k, d), dtype=None, device=dev)'):
        "The table is always float32 here (converted by the feature check), torch's default dtype: the same buffer.",
    ('evaluate_episodes', 'sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=dev)',
     'sup_buf = torch.empty((c * n * k, d), device=dev)'):
        "The table is always float32 here (converted by the feature check), torch's default dtype: the same buffer.",
    ('evaluate_episodes', 'sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=dev)',
     'sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, device=dev)',
     'sup_buf = torch.empty((c * n * k, d), dtype=feats.dtype, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=dev)',
     'qry_buf = torch.empty((c * n * q, d), dtype=None, device=dev)'):
        "The table is always float32 here (converted by the feature check), torch's default dtype: the same buffer.",
    ('evaluate_episodes', 'qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=dev)',
     'qry_buf = torch.empty((c * n * q, d), device=dev)'):
        "The table is always float32 here (converted by the feature check), torch's default dtype: the same buffer.",
    ('evaluate_episodes', 'qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=dev)',
     'qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('evaluate_episodes', 'qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, device=dev)',
     'qry_buf = torch.empty((c * n * q, d), dtype=feats.dtype, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('_protonet_blocks', 'blk = c * max(1, PROTONET_BLOCK_EPISODES // c)',
     'blk = c * max(2, PROTONET_BLOCK_EPISODES // c)'):
        'Block size only: a block of 2c episodes instead of c when a chunk exceeds 500 episodes; the norms, the finiteness check and the arg-max give the same values for any block size (tested with blocks of 9 over 47 episodes).',
    ('_protonet_blocks', 'logit_buf = torch.empty((min(blk, e), nq, n), dtype=feats.dtype)',
     'logit_buf = torch.empty((min(blk, e), nq, n), dtype=None)'):
        "The table is always float32 here (converted by the feature check), torch's default dtype: the same buffer.",
    ('_protonet_blocks', 'logit_buf = torch.empty((min(blk, e), nq, n), dtype=feats.dtype)',
     'logit_buf = torch.empty((min(blk, e), nq, n), )'):
        "The table is always float32 here (converted by the feature check), torch's default dtype: the same buffer.",
    ('_protonet_blocks', 'for s in range(b0, b0 + bm, c):',
     'for s in range(b0, b0 + bm, ):'):
        'Steps one episode at a time instead of one chunk: chunks overlap and an episode is scored up to c times into the same logit rows with the same values; results unchanged, only slower.',
    ('_protonet_blocks', 'sup = torch.index_select(feats, 0, sup_flat[s * nk : (s + m) * nk], out=sup_buf[: m * nk])',
     'sup = torch.index_select(feats, 0, sup_flat[s * nk : (s + m) * nk], out=None)'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('_protonet_blocks', 'sup = torch.index_select(feats, 0, sup_flat[s * nk : (s + m) * nk], out=sup_buf[: m * nk])',
     'sup = torch.index_select(feats, 0, sup_flat[s * nk : (s + m) * nk], )'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('_protonet_blocks', 'qry = torch.index_select(feats, 0, qry_flat[s * nq : (s + m) * nq], out=qry_buf[: m * nq]).view(m, nq, d)',
     'qry = torch.index_select(feats, 0, qry_flat[s * nq : (s + m) * nq], out=None).view(m, nq, d)'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('_protonet_blocks', 'qry = torch.index_select(feats, 0, qry_flat[s * nq : (s + m) * nq], out=qry_buf[: m * nq]).view(m, nq, d)',
     'qry = torch.index_select(feats, 0, qry_flat[s * nq : (s + m) * nq], ).view(m, nq, d)'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('evaluate_episodes', 'sup = torch.index_select(feats, 0, sup_flat[s * n * k : (s + m) * n * k], out=sup_buf[: m * n * k]).view(m, n, k, d)',
     'sup = torch.index_select(feats, 0, sup_flat[s * n * k : (s + m) * n * k], out=None).view(m, n, k, d)'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('evaluate_episodes', 'sup = torch.index_select(feats, 0, sup_flat[s * n * k : (s + m) * n * k], out=sup_buf[: m * n * k]).view(m, n, k, d)',
     'sup = torch.index_select(feats, 0, sup_flat[s * n * k : (s + m) * n * k], ).view(m, n, k, d)'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('evaluate_episodes', 'qry = torch.index_select(feats, 0, qry_flat[s * n * q : (s + m) * n * q], out=qry_buf[: m * n * q]).view(m, n * q, d)',
     'qry = torch.index_select(feats, 0, qry_flat[s * n * q : (s + m) * n * q], out=None).view(m, n * q, d)'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('evaluate_episodes', 'qry = torch.index_select(feats, 0, qry_flat[s * n * q : (s + m) * n * q], out=qry_buf[: m * n * q]).view(m, n * q, d)',
     'qry = torch.index_select(feats, 0, qry_flat[s * n * q : (s + m) * n * q], ).view(m, n * q, d)'):
        'Gathers into a fresh tensor instead of the reused buffer: the same rows (memory use only).',
    ('resolve_chunk_size', 'per_episode = max(1, rows * int(dim) * int(itemsize))',
     'per_episode = max(2, rows * int(dim) * int(itemsize))'):
        'Differs only when rows * dim * itemsize < 2 (a 0-dimensional table); then both give 8 MiB // 1 or // 2 episodes, capped at 1000 alike.',
    ('ProtoNet._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), dtype=None, device=x.device)'):
        "Features are always float32 here (check_features converts every input), torch's default dtype: the same tensor.",
    ('ProtoNet._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), device=x.device)'):
        "Features are always float32 here (check_features converts every input), torch's default dtype: the same tensor.",
    ('ProtoNet._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('ProtoNet._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('ProtoNet._fit', 'self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(x.dtype)',
     'self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(None)'):
        'to(None) leaves the int64 counts as they are; float32 / int64 divides to float32: the same prototypes.',
    ('ProtoNet._fit', 'self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(x.dtype)',
     'self.prototypes_ = protos / torch.bincount(y, ).clamp_min(1).unsqueeze(1).to(x.dtype)'):
        "y are the encoded labels 0..n_classes-1 of np.unique (or the episode's class-major labels): every class occurs, so bincount has length n_classes anyway.",
    ('SimpleShot._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), dtype=None, device=x.device)'):
        "Features are always float32 here (check_features converts every input), torch's default dtype: the same tensor.",
    ('SimpleShot._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), device=x.device)'):
        "Features are always float32 here (check_features converts every input), torch's default dtype: the same tensor.",
    ('SimpleShot._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('SimpleShot._fit', 'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, device=x.device)',
     'protos = torch.zeros((n_classes, x.shape[1]), dtype=x.dtype, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('SimpleShot._fit', 'self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(x.dtype)',
     'self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(None)'):
        'to(None) leaves the int64 counts as they are; float32 / int64 divides to float32: the same prototypes.',
    ('SimpleShot._fit', 'self.prototypes_ = protos / torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(x.dtype)',
     'self.prototypes_ = protos / torch.bincount(y, ).clamp_min(1).unsqueeze(1).to(x.dtype)'):
        "y are the encoded labels 0..n_classes-1 of np.unique (or the episode's class-major labels): every class occurs, so bincount has length n_classes anyway.",
    ('KNN.episode_logits', 'y = torch.arange(n, device=support.device).repeat_interleave(k).expand(e, -1)',
     'y = torch.arange(n, device=None).repeat_interleave(k).expand(e, -1)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('KNN.episode_logits', 'y = torch.arange(n, device=support.device).repeat_interleave(k).expand(e, -1)',
     'y = torch.arange(n, ).repeat_interleave(k).expand(e, -1)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('LinearProbe._logits', 'return torch.zeros((q.shape[0], 1), dtype=torch.float32)',
     'return torch.zeros((q.shape[0], 1), dtype=None)'):
        "float32 is torch's default dtype: the same tensor.",
    ('LinearProbe._logits', 'return torch.zeros((q.shape[0], 1), dtype=torch.float32)',
     'return torch.zeros((q.shape[0], 1), )'):
        "float32 is torch's default dtype: the same tensor.",
    ('LinearProbe._logits', 'return torch.as_tensor(z, dtype=torch.float32, device=q.device)',
     'return torch.as_tensor(z, dtype=torch.float32, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('LinearProbe._logits', 'return torch.as_tensor(z, dtype=torch.float32, device=q.device)',
     'return torch.as_tensor(z, dtype=torch.float32, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('LinearProbe._fit', 'self.basis_ = vh[s > s[0] * 1e-7].T.contiguous()  # (d, r), orthonormal columns',
     'self.basis_ = vh[s >= s[0] * 1e-7].T.contiguous()  # (d, r), orthonormal columns'):
        'Differs only for a singular value exactly equal to 1e-7 of the largest; numerically-zero singular values of the float64 SVD are ~1e-16 of the largest, real ones far above the cut.',
    ('LinearProbe._fit', 'self.basis_ = vh[s > s[0] * 1e-7].T.contiguous()  # (d, r), orthonormal columns',
     'self.basis_ = vh[s > s[1] * 1e-7].T.contiguous()  # (d, r), orthonormal columns'):
        'A cut at 1e-7 of the second-largest instead of the largest singular value: both lie many orders of magnitude above the numerically-zero singular values (~1e-16) and below the real ones of a support set, so the same basis is kept.',
    ('FewShotMethod.episode_logits', 'out = torch.empty((e, query.shape[1], n), dtype=torch.float32, device=query.device)',
     'out = torch.empty((e, query.shape[1], n), dtype=None, device=query.device)'):
        "float32 is torch's default dtype: the same buffer.",
    ('FewShotMethod.episode_logits', 'out = torch.empty((e, query.shape[1], n), dtype=torch.float32, device=query.device)',
     'out = torch.empty((e, query.shape[1], n), device=query.device)'):
        "float32 is torch's default dtype: the same buffer.",
    ('FewShotMethod.episode_logits', 'out = torch.empty((e, query.shape[1], n), dtype=torch.float32, device=query.device)',
     'out = torch.empty((e, query.shape[1], n), dtype=torch.float32, device=None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('FewShotMethod.episode_logits', 'out = torch.empty((e, query.shape[1], n), dtype=torch.float32, device=query.device)',
     'out = torch.empty((e, query.shape[1], n), dtype=torch.float32, )'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('FewShotMethod.episode_logits', 'self._fit(support[i].reshape(n * k, d), y.to(support.device), n)',
     'self._fit(support[i].reshape(n * k, d), y.to(None), n)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('FewShotMethod.fit', 'self._fit(xt, torch.as_tensor(enc, dtype=torch.int64), len(self.classes_))',
     'self._fit(xt, torch.as_tensor(enc, dtype=None), len(self.classes_))'):
        'enc is the int64 (intp) inverse index of np.unique: as_tensor keeps int64 either way.',
    ('FewShotMethod.fit', 'self._fit(xt, torch.as_tensor(enc, dtype=torch.int64), len(self.classes_))',
     'self._fit(xt, torch.as_tensor(enc, ), len(self.classes_))'):
        'enc is the int64 (intp) inverse index of np.unique: as_tensor keeps int64 either way.',
    ('SimpleShot.transform', 'return l2_normalize(features - self.base_mean_.to(features.device))',
     'return l2_normalize(features - self.base_mean_.to(None))'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('FewShotMethod.fit', 'validate_data(self, X, reset=True, skip_check_array=True)  # n_features_in_, feature_names_in_',
     'validate_data(self, X, skip_check_array=True)  # n_features_in_, feature_names_in_'):
        "reset defaults to True in sklearn.utils.validation.validate_data: the same call.",
    ('FewShotMethod._scores', 'validate_data(self, X, reset=False, skip_check_array=True)  # feature names as in fit',
     'validate_data(self, X, reset=None, skip_check_array=True)  # feature names as in fit'):
        "scikit-learn only tests reset for truth (`if reset:` in _check_feature_names and _check_n_features, scikit-learn "
        "1.9); None is falsy like False: the same checks. (reset=True and reset left out are killed by "
        "test_feature_names_of_a_dataframe.)",
    ('_as_tensor', 'a = a.astype(np.float64)', 'a = a.astype(None)'):
        "numpy reads dtype None as float64 (np.dtype(None) is float64): the same conversion of an object array.",
    ('text_methods', 'return [n for n in METHODS.names() if getattr(METHODS.get(n), "uses_class_text", False)]',
     'return [n for n in METHODS.names() if getattr(METHODS.get(n), "uses_class_text", None)]'):
        "The default is only tested for truth in the filter; None is falsy like False: the same list.",
    ('CrossModalLinearProbe._logits', 'return torch.log(torch.as_tensor(p, dtype=torch.float32).clamp_min(1e-30))',
     'return torch.log(torch.as_tensor(p, dtype=None).clamp_min(1e-30))'):
        'probe_ is a LinearProbe, whose predict_proba (FewShotMethod.predict_proba: softmax of float32 logits, .numpy()) returns float32: as_tensor keeps float32 without the dtype argument.',
    ('CrossModalLinearProbe._logits', 'return torch.log(torch.as_tensor(p, dtype=torch.float32).clamp_min(1e-30))',
     'return torch.log(torch.as_tensor(p, ).clamp_min(1e-30))'):
        'probe_ is a LinearProbe, whose predict_proba (FewShotMethod.predict_proba: softmax of float32 logits, .numpy()) returns float32: as_tensor keeps float32 without the dtype argument.',
    ('text_prototypes', 't = t.detach().cpu() if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t, dtype=np.float32))',
     't = t.detach().cpu() if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t, dtype=None))'):
        "The next line casts to float32 anyway (t.to(torch.float32)); for real numbers (bool, int, float lists or arrays) numpy's and torch's float64/int -> float32 casts round the same way (to nearest), so the prototypes are identical. (Only numbers written as strings differ: numpy parses them with dtype=float32, torch refuses a string array; not an accepted input.)",
    ('text_prototypes', 't = t.detach().cpu() if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t, dtype=np.float32))',
     't = t.detach().cpu() if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t, ))'):
        "The next line casts to float32 anyway (t.to(torch.float32)); for real numbers (bool, int, float lists or arrays) numpy's and torch's float64/int -> float32 casts round the same way (to nearest), so the prototypes are identical. (Only numbers written as strings differ: numpy parses them with dtype=float32, torch refuses a string array; not an accepted input.)",
    ('CLIPAdapter._build', 'with torch.random.fork_rng(devices=[]):', 'with torch.random.fork_rng(devices=None):'):
        "devices=None also saves and restores the RNG state of every CUDA device (none on CPU); the block seeds and draws from "
        "the CPU generator only (nn.Linear's initialisation), which both fork and restore: the same weights, the same state after.",
    ('TextMethod._fit', 'oh = one_hot(y, n_classes).to(x.dtype)',
     'oh = one_hot(y, n_classes).to(None)'):
        'one_hot returns float32 and x is always float32 here (check_features converts every input): to(None) leaves the same tensor.',
    ('TextMethod._fit', 'text = text_prototypes(self.class_text, self.classes_, dim=x.shape[1]).to(x.device)',
     'text = text_prototypes(self.class_text, self.classes_, dim=x.shape[1]).to(None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('TextMethod._fit', 'raise FeatureError(f"class_text must be a mapping {{class label: embedding}} or {SUPPORT_MEANS!r}, " f"got the string {self.class_text!r}")',
     'raise FeatureError(None)'):
        "Unreachable: _fit calls self.check_params() first, which already raises (test_class_text_kind_message) for every string other than 'support-means'.",
    ('one_hot', 'return torch.nn.functional.one_hot(y, n_classes).to(torch.float32)',
     'return torch.nn.functional.one_hot(y, ).to(torch.float32)'):
        'Without n_classes one_hot uses max(y) + 1 columns; y are the encoded support labels 0..n_classes-1 of np.unique, so every class occurs and max(y) + 1 == n_classes.',
    ('train_full_batch', 'sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps)) if cosine else None',
     'sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(2, steps)) if cosine else None'):
        "Differs only for steps <= 1, where at most one update is made, with the initial learning rate in both (the schedule's T_max only changes the later rates).",
    ('CLIPAdapter._build', 'return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=False), nn.ReLU())',
     'return nn.Sequential(nn.Linear(d, h, bias=None), nn.ReLU(), nn.Linear(h, d, bias=False), nn.ReLU())'):
        'nn.Linear tests bias for truth (`if bias:`); None is falsy like False: no bias parameter either way (checked: nn.Linear(3, 2, bias=None).bias is None).',
    ('CLIPAdapter._build', 'return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=False), nn.ReLU())',
     'return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=None), nn.ReLU())'):
        'nn.Linear tests bias for truth (`if bias:`); None is falsy like False: no bias parameter either way (checked: nn.Linear(3, 2, bias=None).bias is None).',
    ("check_sampling_memory", 'if phys is not None and need_b > phys // 2:',
     'if phys is not None and need_b > phys / 2:'):
        "need_b is an int (sampling_bytes), and for an int n and an int p, n > p // 2 exactly when n > p / 2 (p odd: "
        "p // 2 = (p - 1) / 2 and the next int above it already exceeds p / 2); float p / 2 is exact below 2**53 B "
        "(8 PiB) of memory (checked on 300000 random sizes up to 16 TiB: no difference).",
    ("check_sampling_memory", 'fit = max(1, int(n_episodes * (phys // 2) / need_b))',
     'fit = max(1, int(n_episodes * (phys / 2) / need_b))'):
        "need_b = n_episodes * c with an int c (sampling_bytes is a multiple of its episode count), so fit = "
        "floor(h / c) with h = phys // 2; phys / 2 adds at most 0.5 to the int h, which never crosses a multiple of "
        "the int c (floor((h + 0.5) / c) = floor(h / c)); float rounding matters only near 2**52 B (checked on 300000 "
        "random sizes up to 16 TiB: no difference).",
    ("method_label", 'name = getattr(method, "name", "") or ""', 'name = getattr(method, "name", None) or ""'):
        'The default is followed by `or ""`: a missing name gives None or "" = "", the same as "" or "".',
    ("LinearProbe._fit", 'if self.basis_.shape[1] == 0 or not bool(s[0] > 0):  # every support row is zero: no direction to fit',
     'if self.basis_.shape[1] == 0 and not bool(s[0] > 0):  # every support row is zero: no direction to fit'):
        "The two tests agree: the basis keeps the singular values s > s[0] * 1e-7, so it is empty exactly when s[0] <= 0 "
        "(s[0] > 0 keeps s[0] itself; NaN keeps nothing and fails s[0] > 0 too); `or` and `and` of two equal conditions are equal.",
    ("_class_index", 'order = np.argsort(labels, kind="stable")', 'order = np.argsort(labels, kind="STABLE")'):
        "numpy reads the sort kind case-insensitively: 'STABLE' is 'stable' (checked: identical order).",
    ("FewShotMethod.get_params", 'return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}',
     'return {p: getattr(self, p) for p in sig.parameters if p != "XXselfXX" and hasattr(self, p)}'):
        "The name test is redundant: a method has no attribute called 'self', so hasattr(self, 'self') already leaves that parameter out.",
    ("FewShotMethod.get_params", 'return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}',
     'return {p: getattr(self, p) for p in sig.parameters if p != "SELF" and hasattr(self, p)}'):
        "The name test is redundant: a method has no attribute called 'self', so hasattr(self, 'self') already leaves that parameter out.",
    ("infeasibility", 'sample_episodes(labels, n_way, n_shot, n_query, 1, seed=0, classes=classes, class_names=class_names)',
     'sample_episodes(labels, n_way, n_shot, n_query, 1, classes=classes, class_names=class_names)'):
        'seed defaults to 0: the same call.',
    ("infeasibility", 'sample_episodes(labels, n_way, n_shot, n_query, 1, seed=0, classes=classes, class_names=class_names)',
     'sample_episodes(labels, n_way, n_shot, n_query, 2, seed=0, classes=classes, class_names=class_names)'):
        'Feasibility is decided by the checks before any draw (counts per class, number of classes), which do not depend on the number of episodes.',
    ("infeasibility", 'sample_episodes(labels, n_way, n_shot, n_query, 1, seed=0, classes=classes, class_names=class_names)',
     'sample_episodes(labels, n_way, n_shot, n_query, 1, seed=1, classes=classes, class_names=class_names)'):
        'Feasibility is decided by the checks before any draw, which do not depend on the seed.',
    ('ProtoNet.episode_scores', 'if self.metric != "cosine":',
     'if self.metric != "XXcosineXX":'):
        "Reached only for a metric other than 'euclidean': for 'cosine' the mutant calls check_params, which passes for a valid cosine ProtoNet; for any other metric both call it and raise (tested).",
    ('ProtoNet.episode_scores', 'if self.metric != "cosine":',
     'if self.metric != "COSINE":'):
        "Reached only for a metric other than 'euclidean': for 'cosine' the mutant calls check_params, which passes for a valid cosine ProtoNet; for any other metric both call it and raise (tested).",
    ('SimpleShot.transform_features', 'return l2_normalize(features - self.base_mean_.to(features.device))',
     'return l2_normalize(features - self.base_mean_.to(None))'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('FewShotMethod.fit', 'self._fit(xt, torch.as_tensor(enc.reshape(-1), dtype=torch.int64), len(self.classes_))',
     'self._fit(xt, torch.as_tensor(enc.reshape(-1), dtype=None), len(self.classes_))'):
        'enc is the int64 (intp) inverse index of np.unique: as_tensor keeps int64 either way.',
    ('FewShotMethod.fit', 'self._fit(xt, torch.as_tensor(enc.reshape(-1), dtype=torch.int64), len(self.classes_))',
     'self._fit(xt, torch.as_tensor(enc.reshape(-1), ), len(self.classes_))'):
        'enc is the int64 (intp) inverse index of np.unique: as_tensor keeps int64 either way.',
    ('FewShotMethod.fit', 'self._fit(xt, torch.as_tensor(enc.reshape(-1), dtype=torch.int64), len(self.classes_))',
     'self._fit(xt, torch.as_tensor(enc.reshape(-2), dtype=torch.int64), len(self.classes_))'):
        "numpy's reshape treats any negative size as the one inferred dimension: -2 is -1.",
    ('FewShotMethod.fit', 'self._fit(xt, torch.as_tensor(enc.reshape(-1), dtype=torch.int64), len(self.classes_))',
     'self._fit(xt, torch.as_tensor(enc.reshape(None), dtype=torch.int64), len(self.classes_))'):
        "numpy's reshape(None) keeps the shape; enc is already 1-d (the -1 only guards numpy versions that return it 2-d).",
    # mahalanobis-text (fewmm/methods/mahalanobis_text.py)
    ('MahalanobisTextPrior.fit_base', 'inv_t = torch.as_tensor(inv.reshape(-1), dtype=torch.int64)',
     'inv_t = torch.as_tensor(inv.reshape(-1), dtype=None)'):
        'inv is the inverse index of np.unique, an intp (int64) array: as_tensor keeps int64 without the dtype argument.',
    ('MahalanobisTextPrior.fit_base', 'inv_t = torch.as_tensor(inv.reshape(-1), dtype=torch.int64)',
     'inv_t = torch.as_tensor(inv.reshape(-1), )'):
        'inv is the inverse index of np.unique, an intp (int64) array: as_tensor keeps int64 without the dtype argument.',
    ('MahalanobisTextPrior.fit_base', 'inv_t = torch.as_tensor(inv.reshape(-1), dtype=torch.int64)',
     'inv_t = torch.as_tensor(inv.reshape(None), dtype=torch.int64)'):
        "numpy's reshape(None) keeps the shape; inv is already 1-d (np.unique of the 1-d labels check_labels returns).",
    ('MahalanobisTextPrior.fit_base', 'inv_t = torch.as_tensor(inv.reshape(-1), dtype=torch.int64)',
     'inv_t = torch.as_tensor(inv.reshape(-2), dtype=torch.int64)'):
        "numpy's reshape treats any negative size as the one inferred dimension: -2 is -1.",
    ('MahalanobisTextPrior.fit_base', 'means = means / torch.bincount(inv_t, minlength=classes.size).unsqueeze(1).to(torch.float64)',
     'means = means / torch.bincount(inv_t, minlength=classes.size).unsqueeze(1).to(None)'):
        'to(None) leaves the int64 counts as they are; float64 / int64 divides to float64 with the counts converted exactly: the same means.',
    ('MahalanobisTextPrior.fit_base', 'means = means / torch.bincount(inv_t, minlength=classes.size).unsqueeze(1).to(torch.float64)',
     'means = means / torch.bincount(inv_t, ).unsqueeze(1).to(torch.float64)'):
        'inv is the inverse index of np.unique: every class 0..C-1 occurs, so bincount has length C with or without minlength.',
    ('MahalanobisTextPrior.transform_features', 'u = l2_normalize((u - self.base_mean_.to(u.device)) @ self.whitening_.to(u.device))',
     'u = l2_normalize((u - self.base_mean_.to(None)) @ self.whitening_.to(u.device))'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('MahalanobisTextPrior.transform_features', 'u = l2_normalize((u - self.base_mean_.to(u.device)) @ self.whitening_.to(u.device))',
     'u = l2_normalize((u - self.base_mean_.to(u.device)) @ self.whitening_.to(None))'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('MahalanobisTextPrior.transform_features', 'if self.whitening_.shape[0] != d:',
     'if self.whitening_.shape[1] != d:'):
        'whitening_ is square (d_item, d_item) (eigenvectors times their transpose): shape[1] is shape[0].',
    ('MahalanobisTextPrior.transform_features', 'f"{self.whitening_.shape[0]}")',
     'f"{self.whitening_.shape[1]}")'):
        'whitening_ is square (d_item, d_item) (eigenvectors times their transpose): shape[1] is shape[0].',
    ('MahalanobisTextPrior._fit', 'counts = torch.bincount(y, minlength=n_classes).to(x.dtype).unsqueeze(1)',
     'counts = torch.bincount(y, minlength=n_classes).to(None).unsqueeze(1)'):
        "int64 counts instead of float32: `oh.T @ x / counts` (float32 / int64 tensor) and `counts + w` (int64 + a Python float: torch's default float32) are float32 with the counts converted exactly: the same prototypes.",
    ('MahalanobisTextPrior._fit', 'counts = torch.bincount(y, minlength=n_classes).to(x.dtype).unsqueeze(1)',
     'counts = torch.bincount(y, ).to(x.dtype).unsqueeze(1)'):
        "y are the encoded labels of fit (np.unique's inverse index): every class 0..n_classes-1 occurs, so bincount has length n_classes anyway.",
    ('MahalanobisTextPrior._fit', 'oh = one_hot(y, n_classes).to(x.dtype)',
     'oh = one_hot(y, n_classes).to(None)'):
        'fewmm.methods.text.one_hot returns float32 already and the features are float32: .to(x.dtype) and .to(None) both leave it unchanged.',
    ('MahalanobisTextPrior._fit', 'if isinstance(self.class_text, str) and self.class_text == SUPPORT_MEANS:',
     'if isinstance(self.class_text, str) or self.class_text == SUPPORT_MEANS:'):
        "A str class_text other than 'support-means' is refused by TextMethod.check_params, the first line of _fit (tested: test_mahalanobis_text_support_means_text_and_float32_output); for the accepted values (a mapping, or 'support-means') `or` and `and` give the same branch.",
    ('MahalanobisTextPrior._fit', 'text = text_prototypes(self.class_text, self.classes_, dim=jd).to(x.device)',
     'text = text_prototypes(self.class_text, self.classes_, dim=jd).to(None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    # the meta-trained methods (fewmm/methods/meta_base.py, maml.py, protonet_head.py)
    ('MetaTrainedMethod._fit', 'self.model_ = self._model_for(x.shape[1], n_classes, x.device)',
     'self.model_ = self._model_for(x.shape[1], n_classes, None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('MetaTrainedMethod._model_for', 'return self._model_for_impl(dim, n_classes, device)',
     'return self._model_for_impl(dim, n_classes, None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('MetaTrainedMethod.episode_logits', 'model = self._model_for(support.shape[-1], support.shape[1], support.device)',
     'model = self._model_for(support.shape[-1], support.shape[1], None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('MetaTrainedMethod._model_for_impl', 'return model.to(device)',
     'return model.to(None)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('MetaTrainedMethod._model_for_impl', 'want = next((m.in_features for m in model.modules() if isinstance(m, nn.Linear)), None)',
     'want = next((m.in_features for m in model.modules() if isinstance(m, nn.Linear)), )'):
        'Only the default of next() is dropped, used when the model has no nn.Linear; every model here comes from _build (mlp: one or two nn.Linear; MAML wraps an mlp), so the generator always yields and the default is never used.',
    ('MetaTrainedMethod._logits', 'counts = torch.bincount(y, minlength=n)',
     'counts = torch.bincount(y, )'):
        '_logits scores the support of fit, whose labels are the inverse index of np.unique: every class 0..n-1 occurs, so bincount has length n with or without minlength.',
    ('ProtoNetHead._score_unbalanced', 'protos = protos / torch.bincount(y, minlength=n).clamp_min(1).unsqueeze(1).to(z.dtype)',
     'protos = protos / torch.bincount(y, ).clamp_min(1).unsqueeze(1).to(z.dtype)'):
        'Reached from _logits with the support of fit, whose labels are the inverse index of np.unique: every class 0..n-1 occurs, so bincount has length n with or without minlength.',
    ('ProtoNetHead._score_unbalanced', 'protos = torch.zeros((n, z.shape[1]), dtype=z.dtype, device=z.device).index_add_(0, y, z)',
     'protos = torch.zeros((n, z.shape[1]), dtype=z.dtype, device=None).index_add_(0, y, z)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('ProtoNetHead._score_unbalanced', 'protos = torch.zeros((n, z.shape[1]), dtype=z.dtype, device=z.device).index_add_(0, y, z)',
     'protos = torch.zeros((n, z.shape[1]), dtype=z.dtype, ).index_add_(0, y, z)'):
        'Device argument only: on CPU (this machine and CI have no GPU) None means the CPU, the same device; the GPU path is not exercised by the test suite.',
    ('ProtoNetHead._score_unbalanced', 'protos = torch.zeros((n, z.shape[1]), dtype=z.dtype, device=z.device).index_add_(0, y, z)',
     'protos = torch.zeros((n, z.shape[1]), dtype=None, device=z.device).index_add_(0, y, z)'):
        "The embedding z is float32 (the mlp's parameters and the checked features are float32), torch's default dtype: the same zeros.",
    ('ProtoNetHead._score_unbalanced', 'protos = torch.zeros((n, z.shape[1]), dtype=z.dtype, device=z.device).index_add_(0, y, z)',
     'protos = torch.zeros((n, z.shape[1]), device=z.device).index_add_(0, y, z)'):
        "The embedding z is float32 (the mlp's parameters and the checked features are float32), torch's default dtype: the same zeros.",
    ('ProtoNetHead._score_unbalanced', 'protos = protos / torch.bincount(y, minlength=n).clamp_min(1).unsqueeze(1).to(z.dtype)',
     'protos = protos / torch.bincount(y, minlength=n).clamp_min(1).unsqueeze(1).to(None)'):
        'to(None) leaves the int64 counts as they are; float32 / int64 divides to float32 with the counts converted exactly: the same prototypes.',
    ('MetaTrainedMethod.fit_base', 'hist = self._meta_train(model, x, enc.reshape(-1))',
     'hist = self._meta_train(model, x, enc.reshape(None))'):
        "numpy's reshape(None) keeps the shape; enc is already 1-d (the inverse index of np.unique of the 1-d labels check_labels returns).",
    ('MetaTrainedMethod.fit_base', 'hist = self._meta_train(model, x, enc.reshape(-1))',
     'hist = self._meta_train(model, x, enc.reshape(-2))'):
        "numpy's reshape treats any negative size as the one inferred dimension: -2 is -1.",
    ('MAMLMethod._score_unbalanced', 'params = model.adapt(x.unsqueeze(0), y.unsqueeze(0), differentiable=False)',
     'params = model.adapt(x.unsqueeze(0), y.unsqueeze(0), differentiable=None)'):
        'differentiable only decides whether the adapted parameters keep their autograd graph (create_graph) for a meta-gradient; the inner loop computes the same values either way and _logits detaches the result (checked bit for bit: maml, anil, metasgd, first- and second-order, on an unbalanced support, differentiable False / None / True).',
    ('MAMLMethod._score_unbalanced', 'params = model.adapt(x.unsqueeze(0), y.unsqueeze(0), differentiable=False)',
     'params = model.adapt(x.unsqueeze(0), y.unsqueeze(0), )'):
        'differentiable only decides whether the adapted parameters keep their autograd graph (create_graph) for a meta-gradient; the inner loop computes the same values either way and _logits detaches the result (checked bit for bit: maml, anil, metasgd, first- and second-order, on an unbalanced support, differentiable False / None / True; left out it is None).',
    ('MAMLMethod._score_unbalanced', 'params = model.adapt(x.unsqueeze(0), y.unsqueeze(0), differentiable=False)',
     'params = model.adapt(x.unsqueeze(0), y.unsqueeze(0), differentiable=True)'):
        'differentiable only decides whether the adapted parameters keep their autograd graph (create_graph) for a meta-gradient; the inner loop computes the same values either way and _logits detaches the result (checked bit for bit: maml, anil, metasgd, first- and second-order, on an unbalanced support, differentiable False / None / True).',
    ('MAMLMethod._score_unbalanced', 'return model.predict_logits(params, q.unsqueeze(0))[0, :, :n].to(torch.float32)',
     'return model.predict_logits(params, q.unsqueeze(0))[0, :, :n].to(None)'):
        "The head's parameters and the checked features are float32, so the logits already are float32: .to(torch.float32) and .to(None) both return them unchanged (checked: dtype float32 without the cast).",
    ('mlp', 'with torch.random.fork_rng(devices=[]):',
     'with torch.random.fork_rng(devices=None):'):
        'fork_rng(devices=None) also saves and restores the generator of every visible CUDA device (none on this machine and CI); mlp builds the head on the CPU and draws only from the CPU generator, which is forked and restored either way: the same initialisation and the same global state after.',
    ('ProtoNetHead._meta_train', 'learner = TensorLearner(model, features, labels, device=features.device, name="protonet-head")',
     'learner = TensorLearner(model, features, labels, device=features.device, name=None)'):
        "The learner's name is shown only in the progress bar's description (progress=False: no bar) and in TensorLearner's error for inputs that do not fit the model, which cannot happen here (the model is built for these features' width).",
    ('ProtoNetHead._meta_train', 'learner = TensorLearner(model, features, labels, device=features.device, name="protonet-head")',
     'learner = TensorLearner(model, features, labels, device=features.device, )'):
        "The learner's name is shown only in the progress bar's description (progress=False: no bar) and in TensorLearner's error for inputs that do not fit the model, which cannot happen here (the model is built for these features' width).",
    ('ProtoNetHead._meta_train', 'learner = TensorLearner(model, features, labels, device=features.device, name="protonet-head")',
     'learner = TensorLearner(model, features, labels, device=features.device, name="XXprotonet-headXX")'):
        "The learner's name is shown only in the progress bar's description (progress=False: no bar) and in TensorLearner's error for inputs that do not fit the model, which cannot happen here (the model is built for these features' width).",
    ('ProtoNetHead._meta_train', 'learner = TensorLearner(model, features, labels, device=features.device, name="protonet-head")',
     'learner = TensorLearner(model, features, labels, device=features.device, name="PROTONET-HEAD")'):
        "The learner's name is shown only in the progress bar's description (progress=False: no bar) and in TensorLearner's error for inputs that do not fit the model, which cannot happen here (the model is built for these features' width).",
    ('ProtoNetHead._meta_train', 'learner = TensorLearner(model, features, labels, device=features.device, name="protonet-head")',
     'learner = TensorLearner(model, features, labels, name="protonet-head")'):
        "Only TensorLearner's device argument is dropped; its default is 'cpu', where the features are on this machine and CI (no GPU): the same device. The GPU path is not exercised by the test suite.",
    ('ProtoNetHead._meta_train', 'validation="none", eval_every=1, seed=int(self.seed), progress=False, scale_lr_mult=1.0)',
     'validation="none", eval_every=1, seed=int(self.seed), progress=None, scale_lr_mult=1.0)'):
        'The bar is disabled when `not cfg.progress`; not None is True like not False: no bar either way.',
    ('ProtoNetHead._meta_train', 'validation="none", eval_every=1, seed=int(self.seed), progress=False, scale_lr_mult=1.0)',
     'validation="none", eval_every=1, seed=int(self.seed), progress=False, scale_lr_mult=None)'):
        'scale_lr_mult is read only for models with param_groups (fusion heads, fewmm.engine.fit._param_groups); the mlp (nn.Sequential) has none, so all its parameters train at lr whatever the multiplier.',
    ('ProtoNetHead._meta_train', 'validation="none", eval_every=1, seed=int(self.seed), progress=False, scale_lr_mult=1.0)',
     'validation="none", eval_every=1, seed=int(self.seed), progress=False, )'):
        'scale_lr_mult is read only for models with param_groups (fusion heads, fewmm.engine.fit._param_groups); the mlp (nn.Sequential) has none, so all its parameters train at lr whatever the multiplier.',
    ('ProtoNetHead._meta_train', 'validation="none", eval_every=1, seed=int(self.seed), progress=False, scale_lr_mult=1.0)',
     'validation="none", eval_every=1, seed=int(self.seed), progress=False, scale_lr_mult=2.0)'):
        'scale_lr_mult is read only for models with param_groups (fusion heads, fewmm.engine.fit._param_groups); the mlp (nn.Sequential) has none, so all its parameters train at lr whatever the multiplier.',
    ('ProtoNetHead._meta_train', 'return fit(learner, create_trainer("protonet"), np.unique(labels), None, cfg, restore_best=False).history',
     'return fit(learner, create_trainer("protonet"), np.unique(labels), None, cfg, restore_best=None).history'):
        "restore_best loads the best validated weights, and there are none: validation='none' leaves val_eps None, so best_state is never set and the last weights are kept either way.",
    ('ProtoNetHead._meta_train', 'return fit(learner, create_trainer("protonet"), np.unique(labels), None, cfg, restore_best=False).history',
     'return fit(learner, create_trainer("protonet"), np.unique(labels), None, cfg, ).history'):
        "restore_best loads the best validated weights, and there are none: validation='none' leaves val_eps None, so best_state is never set and the last weights are kept either way.",
    ('ProtoNetHead._meta_train', 'return fit(learner, create_trainer("protonet"), np.unique(labels), None, cfg, restore_best=False).history',
     'return fit(learner, create_trainer("protonet"), np.unique(labels), None, cfg, restore_best=True).history'):
        "restore_best loads the best validated weights, and there are none: validation='none' leaves val_eps None, so best_state is never set and the last weights are kept either way.",
    ('meta_trained_methods', 'return [n for n in METHODS.names() if getattr(METHODS.get(n), "needs_base_labels", False)]',
     'return [n for n in METHODS.names() if getattr(METHODS.get(n), "needs_base_labels", None)]'):
        'The default is only tested for truth in the filter; None is falsy like False: the same list.',
    ('joint_block_methods', 'return [n for n in METHODS.names() if getattr(METHODS.get(n), "needs_joint_block", False)]',
     'return [n for n in METHODS.names() if getattr(METHODS.get(n), "needs_joint_block", None)]'):
        'The default is only tested for truth in the filter; None is falsy like False: the same list.',
}


#: Survivors that are NOT equivalent but that mutmut cannot switch on: code that runs only while
#: the package is imported (the registration of the MAML variants), before mutmut activates a
#: mutant in its forked test process. For each, this script applies the mutated line to a fresh copy
#: of the source and runs the tests named here, which must fail (and pass on the unmutated copy);
#: the result is recorded with the survivor (``static_check``). The kill rate stays mutmut's own.
REGISTRY_TEST = ["tests/test_meta_methods.py::test_registry_lists_the_meta_trained_methods"]
IMPORT_TIME: dict[tuple[str, str, str], list[str]] = {
    ("_variant", 'return MAMLMethod(**{"variant": v, **kw})', 'return MAMLMethod(**{"XXvariantXX": v, **kw})'): REGISTRY_TEST,
    ("_variant", 'return MAMLMethod(**{"variant": v, **kw})', 'return MAMLMethod(**{"VARIANT": v, **kw})'): REGISTRY_TEST,
    ("_variant", "factory.needs_base_labels = True  # read by meta_trained_methods without building the method",
     "factory.needs_base_labels = None  # read by meta_trained_methods without building the method"): REGISTRY_TEST,
    ("_variant", "factory.needs_base_labels = True  # read by meta_trained_methods without building the method",
     "factory.needs_base_labels = False  # read by meta_trained_methods without building the method"): REGISTRY_TEST,
}


def _module_file(root: Path, mutant: str) -> Path:
    """``fewmm.methods.x__variant__mutmut_1`` -> root/fewmm/methods/__init__.py (or .../methods.py)."""
    parts = mutant.split(".")[:-1]
    pkg = root.joinpath(*parts)
    return pkg / "__init__.py" if pkg.is_dir() else pkg.with_suffix(".py")


def static_check(sv: dict, tests: list[str], scratch: Path) -> dict:
    """Apply survivor ``sv``'s one-line mutation to a copy of REPO's fewmm/ and run ``tests`` there,
    after checking that they pass on the unmutated copy. Returns ``{"tests", "exit_code",
    "unmutated_exit_code", "killed"}`` (killed: exit code 1, tests failed, and 0 unmutated)."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(REPO / "fewmm", scratch / "fewmm", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "tests", scratch / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(scratch))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *tests]
    base_rc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True).returncode
    f = _module_file(scratch, sv["mutant"])
    lines = f.read_text().splitlines(keepends=True)
    hits = [i for i, ln in enumerate(lines) if ln.strip() == sv["source"]]
    if len(hits) != 1:
        return {"tests": tests, "error": f"the source line is found {len(hits)} times in {f.relative_to(scratch)}", "killed": False}
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = indent + sv["mutated"] + "\n"
    f.write_text("".join(lines))
    rc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True).returncode
    shutil.rmtree(scratch)
    return {"tests": tests, "unmutated_exit_code": base_rc, "exit_code": rc, "killed": base_rc == 0 and rc == 1}


def explain(sv: dict, scratch: Path) -> str:
    """Why survivor ``sv`` is harmless (EQUIVALENT), or what the static check of an IMPORT_TIME
    survivor found (run here when not recorded yet), else "UNEXPLAINED"."""
    key = (sv["function"], sv["source"], sv["mutated"])
    if key in EQUIVALENT:
        return EQUIVALENT[key]
    if key in IMPORT_TIME:
        chk = sv.get("static_check")
        if not chk or chk.get("tests") != IMPORT_TIME[key]:
            chk = sv["static_check"] = static_check(sv, IMPORT_TIME[key], scratch)
        if chk.get("killed"):
            return ("NOT equivalent, but out of mutmut's reach: registration code that runs once at import, before mutmut "
                    "switches a mutant on. Applied to a copy of the source by this script, it makes "
                    f"{', '.join(t.split('::')[-1] for t in chk['tests'])} fail (exit code {chk['exit_code']}; "
                    f"{chk['unmutated_exit_code']} unmutated): caught by the suite.")
    return "UNEXPLAINED"

def _run(cmd, cwd, log, env):
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        return subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode


def _diff(mutmut, name, cwd, env):
    out = subprocess.run([mutmut, "show", name], cwd=cwd, env=env, capture_output=True, text=True).stdout
    minus = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return out, " ".join(minus), " ".join(plus)


def run_module(name: str, workdir: Path, jobs: int, mutmut: str) -> dict:
    mutate, tests, extra = MODULES[name]
    tests = [t for t in tests if (REPO / t).exists()]
    wd = workdir / name
    if wd.exists():
        shutil.rmtree(wd)
    wd.mkdir(parents=True)
    shutil.copytree(REPO / "fewmm", wd / "fewmm", ignore=shutil.ignore_patterns("__pycache__"))
    # all of tests/ (conftest, fixtures, test modules that others import fixtures from, e.g.
    # test_transfer imports test_encoders'); only `tests` are run
    shutil.copytree(REPO / "tests", wd / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    # tests that read a script in benchmarks/ or a committed result (test_mahalanobis_text.py: the goal
    # selection script and results/transfer-goal-selection.json); mutmut copies them on into mutants/ (also_copy)
    for extra_dir in ("benchmarks", "results"):
        shutil.copytree(REPO / extra_dir, wd / extra_dir, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "README.md", wd / "README.md")  # test_sklearn runs the README's scikit-learn section as written
    cfg = [
        "[tool.mutmut]",
        'source_paths = ["fewmm"]',
        f"only_mutate = {json.dumps(mutate)}",
        'also_copy = ["benchmarks", "results", "README.md"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        f"pytest_add_cli_args = {json.dumps(['-p', 'no:cacheprovider', '-q', '-m', 'not slow', *extra])}",
        'process_isolation = "fork"',
        "",
        "[tool.pytest.ini_options]",
        'markers = ["slow: takes more than ~20 s", "needs_data: reads ../shared/data (FEWMM_DATA)"]',
        'filterwarnings = ["ignore::DeprecationWarning:timm.*", "ignore::FutureWarning"]',
    ]
    (wd / "pyproject.toml").write_text("\n".join(cfg) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH="")
    log = wd / "mutmut.log"
    t0 = time.time()
    rc = _run([mutmut, "run", "--max-children", str(jobs)], wd, log, env)
    seconds = time.time() - t0
    res = subprocess.run([mutmut, "results", "--all", "true"], cwd=wd, env=env, capture_output=True, text=True).stdout
    status = {}
    for ln in res.splitlines():
        m = re.match(r"\s*(\S+__mutmut_\d+): (.+)$", ln)
        if m:
            status[m.group(1)] = m.group(2).strip()
    counts: dict[str, int] = {}
    for s in status.values():
        counts[s] = counts.get(s, 0) + 1
    detected = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("segfault", 0)
    survivors = []
    for mname, s in sorted(status.items(), key=lambda kv: (kv[0].rsplit("_", 1)[0], int(kv[0].rsplit("_", 1)[1]))):
        if s in ("killed", "timeout", "segfault"):
            continue
        text, minus, plus = _diff(mutmut, mname, wd, env)
        func = re.sub(r"__mutmut_\d+$", "", mname.rsplit(".", 1)[-1])
        func = ".".join(p for p in func[2:].split("ǁ") if p) if func.startswith("xǁ") else func[2:]
        sv = {"mutant": mname, "status": s, "function": func, "source": minus, "mutated": plus}
        sv["why_harmless"] = explain(sv, workdir / "static-check")
        survivors.append(sv)
    total = len(status)
    return {
        "module": name,
        "mutated_files": mutate,
        "tests": tests,
        "pytest_args": extra,
        "mutants": total,
        "detected": detected,
        "counts": counts,
        "kill_rate": round(detected / total, 4) if total else None,
        "survivors": survivors,
        "seconds": round(seconds, 1),
        "mutmut_exit_code": rc,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", default=list(MODULES), help=f"module groups (default all: {', '.join(MODULES)})")
    ap.add_argument("--jobs", type=int, default=2, help="mutants run in parallel (default 2)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fewmm-mutation")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "mutation.json")
    ap.add_argument("--target", type=float, default=0.90)
    ap.add_argument("--explain-only", action="store_true",
                    help="do not run mutmut: re-read --out and re-apply EQUIVALENT to its survivors (after editing the reasons)")
    ap.add_argument("--readme", type=Path, help="also rewrite the <!-- results:mutation --> block of this Markdown file")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module groups {unknown}; choose from {list(MODULES)}")
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        sys.exit("mutmut is not installed: pip install -c constraints.txt mutmut==3.8.1")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "fewmm", "tests"], cwd=REPO, capture_output=True, text=True).stdout.strip())
    old = json.loads(args.out.read_text())["modules"] if args.out.exists() else {}
    results = dict(old)
    if args.explain_only:
        for r in results.values():
            for sv in r["survivors"]:
                sv["why_harmless"] = explain(sv, args.workdir / "static-check")
        args.modules = []
    for m in args.modules:
        print(f"[mutation] {m} ...", flush=True)
        r = run_module(m, args.workdir, args.jobs, mutmut)
        r["commit"] = commit + ("+uncommitted" if dirty else "")
        r["date"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
        results[m] = r
        print(f"[mutation] {m}: {r['detected']}/{r['mutants']} killed ({100 * (r['kill_rate'] or 0):.1f}%), "
              f"{len(r['survivors'])} survivors, {r['seconds']:.0f} s", flush=True)
    import importlib.metadata as md

    out = {
        "tool": f"mutmut {md.version('mutmut')}",
        "command": "python benchmarks/mutation.py" if args.explain_only or set(args.modules) == set(MODULES)
        else "python benchmarks/mutation.py " + " ".join(args.modules),
        "target_kill_rate": args.target,
        "modules": {k: results[k] for k in MODULES if k in results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(summary(out))
    if args.readme:
        sys.path.insert(0, str(REPO))
        from fewmm.bench.report import update_block

        block = readme_block(out, os.path.relpath(args.out.with_suffix('.md'), REPO))
        args.readme.write_text(update_block(args.readme.read_text(), "mutation", block))
    print(f"[mutation] wrote {args.out} and {args.out.with_suffix('.md')}")
    bad = [k for k, r in out["modules"].items() if (r["kill_rate"] or 0) < args.target
           or any(s["why_harmless"] == "UNEXPLAINED" for s in r["survivors"])]
    return 1 if bad else 0


def readme_block(out: dict, md_path: str = "results/mutation.md") -> str:
    """The README's ``<!-- results:mutation -->`` block from a ``results/mutation.json`` document
    (also read by ``python -m fewmm.paper check``)."""
    block = "\n".join(summary(out).split("\n\n## ")[0].splitlines()[2:]).strip() + "\n"
    unexplained = sum(s["why_harmless"] == "UNEXPLAINED" for r in out["modules"].values() for s in r["survivors"])
    block += (f"\nSurvivors, each with why it is harmless: `{md_path}`"
              + (f" ({unexplained} still marked UNEXPLAINED there: neither a test kills them yet nor is a reason written)" if unexplained else "")
              + ".\n")
    return block


def summary(out: dict) -> str:
    lines = [
        "# Mutation testing (mutmut)",
        "",
        f"Tool: {out['tool']}. Target: at least {100 * out['target_kill_rate']:.0f}% of mutants killed per module.",
        "Regenerate with `python benchmarks/mutation.py` (see its docstring; not run in CI).",
        "",
        "| module | files | tests run per mutant (those reaching the mutated function) | mutants | killed | kill rate | survivors | commit | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, r in out["modules"].items():
        lines.append(
            f"| {k} | {', '.join(r['mutated_files'])} | {', '.join(t.split('/')[-1] for t in r['tests'])} | {r['mutants']} | "
            f"{r['detected']} | {100 * (r['kill_rate'] or 0):.1f}% | {len(r['survivors'])} | {r['commit'][:10]} | {r['seconds'] / 60:.1f} |"
        )
    for k, r in out["modules"].items():
        if not r["survivors"]:
            continue
        lines += ["", f"## Survivors in {k}", ""]
        for s in r["survivors"]:
            lines += [f"- `{s['mutant']}` ({s['status']}) in `{s['function']}`:", f"  `{s['source']}` -> `{s['mutated']}`",
                      f"  Why harmless: {s['why_harmless']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
