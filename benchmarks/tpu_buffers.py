"""The buffers live at the heap's peak, read from an XLA dump of the compiled training step.

``python -m benchmarks.tpu_buffers DIR [--module train_step] [--top 40]`` reads three files that
``XLA_FLAGS="--xla_dump_to=DIR --xla_dump_hlo_module_re=train_step"`` writes for the step (with
libtpu for a TPU target, or XLA:CPU):

* ``*after_optimizations-buffer-assignment.txt``: every HLO value, the allocation holding it, its
  byte offset in that allocation and its size;
* ``*after_optimizations-live-range.txt``: the compiler's flattened schedule and each value's live
  interval in it (``name{index}:start-end``);
* ``*after_optimizations.txt``: the HLO, for each instruction's computation and source
  ``op_name`` (which layer, which transform).

The temporaries are the one ``preallocated-temp`` allocation of memory space 0 (its size is
``memory_analysis().temp_size_in_bytes``). At each point of the schedule the bytes in use are the
union of the ``[offset, offset + size)`` ranges of the values live there, so aliases of one buffer
(the loop carry as the ``AllocateBuffer`` custom call, the ``while`` operand, the body parameter
and the body's root) count once. The peak is the point with the most bytes in use; the table
lists the buffers live there, one row per offset range, with every value sharing it and what it
is in the model. The live-range report's own "peak" section sums values without that union and
so counts an aliased carry twice; it is not used.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import sys

MIB = 2.0**20

_VALUE = re.compile(
    r"^ value: <\d+ (?P<name>\S+)(?: \(phi\))? @\d+> \(size=(?P<size>\d+),offset=(?P<off>\d+)\): "
    r"(?P<shape>.*)$"
)
_ALLOC = re.compile(r"^allocation (\d+): size (\d+),(.*)$")
_RANGE = re.compile(r"^\s+(\S+):(\d+)-(\d+)$")
_INSTR = re.compile(r"^\s+(?:ROOT )?%(\S+) = (.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%(\S+) ")
_OPNAME = re.compile(r'op_name="([^"]*)"')
_CALL = re.compile(r" ([a-z][\w\-]*)\(([^()]*)\)")
_INDEX = re.compile(r"index=(\d+)")


@dataclasses.dataclass
class Value:
    """One HLO value of the temporaries allocation.

    Attributes:
      name: the value's name as the dumps print it (``instr`` or ``instr{i}``).
      size: bytes.
      offset: byte offset in the allocation.
      shape: its shape and layout as printed.
      start: first schedule position it is live at (-1 if the live-range report omits it).
      end: last schedule position it is live at.
      computation: the HLO computation that defines it ('' if not found).
      op_name: the source ``op_name`` of its defining instruction ('' if none).
      origin: where its data comes from, through copies and tuple elements (``carry{i}``,
        ``conditional output {i}``, or the defining opcode and the op_name's last two parts).
    """

    name: str
    size: int
    offset: int
    shape: str
    start: int = -1
    end: int = -1
    computation: str = ""
    op_name: str = ""
    origin: str = ""


def _one(dump: str, module: str, suffix: str) -> str:
    found = sorted(glob.glob(os.path.join(dump, f"*{module}*after_optimizations{suffix}")))
    if len(found) != 1:
        raise ValueError(
            f"dump: expected one *{module}*after_optimizations{suffix} in {dump}, found "
            f"{len(found)}; set XLA_FLAGS='--xla_dump_to={dump} --xla_dump_hlo_module_re={module}'"
        )
    with open(found[0]) as f:
        return f.read()


def parse_temp_values(assignment: str) -> tuple[int, list[Value]]:
    """Return the temporaries allocation's size and its values, from a buffer-assignment dump.

    Args:
      assignment: the text of ``*after_optimizations-buffer-assignment.txt``.

    Returns:
      ``(size, values)``: the bytes of the ``preallocated-temp`` allocation of memory space 0
      (no ``color``; the largest such if several) and its :class:`Value` list.
    """
    best: tuple[int, list[Value]] | None = None
    current: list[Value] | None = None
    for line in assignment.splitlines():
        m = _ALLOC.match(line)
        if m:
            current = None
            attrs = m.group(3)
            if "preallocated-temp" in attrs and "color" not in attrs:
                current = []
                size = int(m.group(2))
                if best is None or size > best[0]:
                    best = (size, current)
            continue
        if current is None:
            continue
        v = _VALUE.match(line)
        if v:
            current.append(
                Value(v["name"].removesuffix("{}"), int(v["size"]), int(v["off"]), v["shape"])
            )
    if best is None:
        raise ValueError("buffer assignment: no preallocated-temp allocation in memory space 0")
    return best


def other_spaces(assignment: str) -> dict[int, int]:
    """Return the bytes of the ``preallocated-temp`` allocations of other memory spaces.

    Args:
      assignment: the text of ``*after_optimizations-buffer-assignment.txt``.

    Returns:
      ``{color: bytes}``; on TPU, color 1 is the memory space layouts print as ``S(1)``, which
      ``temp_size_in_bytes`` does not count.
    """
    out: dict[int, int] = {}
    for m in re.finditer(
        r"^allocation \d+: size (\d+), color (\d+),.*preallocated-temp", assignment, re.M
    ):
        out[int(m.group(2))] = out.get(int(m.group(2)), 0) + int(m.group(1))
    return out


def attach_ranges(values: list[Value], live_range: str) -> int:
    """Set each value's live interval from a live-range dump; return the schedule length."""
    ranges = {}
    body = live_range.split("BufferLiveRange:", 1)
    if len(body) != 2:
        raise ValueError("live range: no 'BufferLiveRange:' section")
    for line in body[1].splitlines():
        m = _RANGE.match(line)
        if m:
            ranges[m.group(1).removesuffix("{}")] = (int(m.group(2)), int(m.group(3)))
        elif line.strip() and not line.startswith("    "):
            break
    last = 0
    for v in values:
        if v.name in ranges:
            v.start, v.end = ranges[v.name]
            last = max(last, v.end)
    return last


def attach_sources(values: list[Value], hlo: str) -> None:
    """Set each value's defining computation and source from the HLO text.

    A value made by a copy, bitcast or tuple element is traced back to the instruction whose
    data it holds, so an asynchronous copy of a carry element reads as that element.
    """
    where: dict[str, tuple[str, str, str, list[str], str]] = {}
    comp = ""
    for line in hlo.splitlines():
        c = _COMP.match(line)
        if c and line.rstrip().endswith("{"):
            comp = c.group(1)
            continue
        m = _INSTR.match(line)
        if m:
            rest = m.group(2)
            op = _OPNAME.search(rest)
            call = _CALL.search(rest)
            opcode, args = (call.group(1), call.group(2)) if call else ("", "")
            index = _INDEX.search(rest)
            where[m.group(1)] = (
                comp,
                op.group(1) if op else "",
                opcode,
                re.findall(r"%([\w.\-]+)", args),
                index.group(1) if index else "",
            )
    for v in values:
        base = v.name.split("{", 1)[0]
        comp, op, opcode, args, _ = where.get(base, ("", "", "", [], ""))
        v.computation, v.op_name = comp, op
        v.origin = _origin(v.name, where)


def _origin(name: str, where: dict) -> str:
    """Return where a value's data comes from: ``carry{i}``, ``opcode op_name`` or ``opcode``."""
    for _ in range(12):
        base, _, idx = name.partition("{")
        idx = idx.rstrip("}")
        if "arg_tuple" in base:
            return f"carry{{{idx}}}" if idx else "carry"
        if base not in where:
            return base
        _, op, opcode, args, index = where[base]
        if opcode == "custom-call" and not args:
            return "carry (initial AllocateBuffer)"
        if opcode in ("copy", "copy-start", "copy-done", "bitcast") and args:
            name = args[0]
            continue
        if opcode == "get-tuple-element" and args:
            name = f"{args[0]}{{{index}}}"
            continue
        if opcode == "conditional":
            return f"conditional output {{{idx}}} ({base})"
        tail = "/".join(op.split("/")[-2:]) if op else ""
        return f"{opcode} {tail}".strip()
    return name


def usage(values: list[Value], t: int) -> int:
    """Return the bytes in use at schedule position ``t``: the union of live values' ranges."""
    spans = sorted((v.offset, v.offset + v.size) for v in values if v.start <= t <= v.end)
    total, reach = 0, -1
    for lo, hi in spans:
        if hi <= reach:
            continue
        total += hi - max(lo, reach) if lo < reach else hi - lo
        reach = hi
    return total


def peak(values: list[Value], length: int) -> tuple[int, int]:
    """Return ``(position, bytes)`` of the schedule point with the most temporaries in use."""
    best = (0, -1)
    for t in range(length + 1):
        u = usage(values, t)
        if u > best[1]:
            best = (t, u)
    return best


def describe(v: Value) -> str:
    """Return what a value is in the model, from its name, computation, op_name and shape."""
    op, name, comp = v.op_name, v.name, v.computation
    in_loop = "while/body" in op or ".sunk" in comp or "arg_tuple" in name
    if name.startswith(("custom-call", "wide.")) or "arg_tuple" in name or name.startswith("while"):
        return "time-loop carry"
    if "AllocateBuffer" in op:
        return "time-loop carry"
    where = "loop body" if in_loop else "outside the loop"
    if "transpose(jvp" in op or "/transpose(" in op:
        return f"{where}: backward (VJP) temporary"
    if "jvp(" in op:
        return f"{where}: forward (linearized) temporary"
    return f"{where}: other"


def layer_of(op_name: str) -> str:
    """Return the model path in an op_name (e.g. ``features_3``), or '' if it names none."""
    m = re.findall(r"(features_\d+|classifier_\d+)", op_name)
    return m[-1] if m else ""


def peak_table(dump: str, module: str = "train_step") -> dict:
    """Read a dump and return the temporaries at their peak.

    Args:
      dump: the ``--xla_dump_to`` directory.
      module: the module name's pattern (the file names contain it).

    Returns:
      ``{'heap': bytes of the allocation, 'position': t, 'peak': bytes in use at t,
      'rows': [{'offset', 'size', 'values': [Value, ...], 'carry_slot'}]}``, rows largest
      first; a row is one offset range in use at the peak and the values live in it there;
      ``carry_slot`` is the loop-carry tuple index whose buffer it is (the body writes the new
      state into the old one's buffer), else None; ``'other_spaces'``: :func:`other_spaces`.
    """
    assignment = _one(dump, module, "-buffer-assignment.txt")
    heap, values = parse_temp_values(assignment)
    length = attach_ranges(values, _one(dump, module, "-live-range.txt"))
    attach_sources(values, _one(dump, module, ".txt"))
    t, used = peak(values, length)
    live = sorted((v for v in values if v.start <= t <= v.end), key=lambda v: (v.offset, -v.size))
    rows: list[dict] = []
    for v in live:
        if rows and v.offset < rows[-1]["offset"] + rows[-1]["size"]:
            r = rows[-1]
            r["size"] = max(r["size"], v.offset + v.size - r["offset"])
            r["values"].append(v)
        else:
            rows.append({"offset": v.offset, "size": v.size, "values": [v]})
    slots = {}  # the loop carry's buffers: (offset, size) -> tuple index
    for v in values:
        m = re.search(r"arg_tuple[\w.]*\{(\d+)\}", v.name)
        if m:
            slots.setdefault((v.offset, v.size), int(m.group(1)))
    for r in rows:
        r["carry_slot"] = slots.get((r["offset"], r["size"]))
    rows.sort(key=lambda r: -r["size"])
    return {
        "heap": heap,
        "position": t,
        "peak": used,
        "rows": rows,
        "other_spaces": other_spaces(assignment),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dump", help="the --xla_dump_to directory")
    p.add_argument("--module", default="train_step", help="module name pattern")
    p.add_argument("--top", type=int, default=40, help="rows to print (default 40)")
    a = p.parse_args(argv)
    r = peak_table(a.dump, a.module)
    print(
        f"temporaries allocation {r['heap'] / MIB:.1f} MiB; peak in use {r['peak'] / MIB:.1f} MiB "
        f"at schedule position {r['position']}"
    )
    for color, size in sorted(r["other_spaces"].items()):
        print(f"memory space {color} temporaries (not in temp_size_in_bytes): {size / MIB:.1f} MiB")
    print("| MiB | offset | shape | where | source | layer | values |")
    print("|---|---|---|---|---|---|---|")
    for row in r["rows"][: a.top]:
        main_v = max(row["values"], key=lambda v: v.size)
        names = ", ".join(v.name for v in row["values"][:3])
        more = len(row["values"]) - 3
        names += f" (+{more})" if more > 0 else ""
        op = next((v.op_name for v in row["values"] if v.op_name), "")
        origin = next((v.origin for v in row["values"] if v.origin.startswith("carry")), "")
        if row["carry_slot"] is not None:
            origin = f"carry slot {{{row['carry_slot']}}}: " + (origin or main_v.origin)
        print(
            f"| {row['size'] / MIB:.1f} | {row['offset']} | {main_v.shape.split('{')[0]} | "
            f"{describe(main_v)} | {origin or main_v.origin} | {layer_of(op)} | {names} |"
        )
    rest = r["rows"][a.top :]
    if rest:
        print(f"| {sum(x['size'] for x in rest) / MIB:.1f} | | | {len(rest)} smaller rows | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
