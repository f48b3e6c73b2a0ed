"""Paper figures from results on disk: ``python -m lpt_probe.figures <figure> RESULTS``.

One subcommand per figure; each reads the table a compute command wrote and draws it
with :mod:`lpt_probe.viz` (so this never imports torch):

  performance  RESULTS/sweep.csv             <- python -m lpt_probe.sweep   (Fig. 2 left, 4, 5)
  convergence  RESULTS/curves.csv            <- python -m lpt_probe.sweep   (Fig. 2 middle)
  mi           RESULTS/mi.csv                <- python -m lpt_probe.mi      (Fig. 2 right + heatmap)
  projection   RESULTS/projection.csv        <- python -m lpt_probe.project (Fig. 6)
  efficiency   RESULTS/train_throughput.csv  <- python benchmarks/bench_train.py (Table 10)
  influence    RESULTS/influence.csv         <- python -m lpt_probe.influence (Section 4: the two forces)
  section4     --sweep S --mi M --influence I: Section 4 on one page (sweep.csv + curves.csv, mi.csv,
               influence.csv)

RESULTS is the folder the producer wrote or the CSV itself. Figures go to ``--out``
(default ``artifacts/figures/``; a folder or an fsspec URL) as PDF (``--png`` adds a 200 dpi
PNG), named after the subcommand or ``--name``; a figure never replaces a file lpt_probe did
not write (the folder's ``.lpt_probe`` marker lists what it wrote; ``--overwrite`` replaces
anyway); a table holding several tasks or models (shot counts for
performance, generators for convergence, probes for mi) gives one figure per group, the
group appended to the name. The paths
written are printed. A missing input, an empty table (no rows) or an ``--out`` that cannot
be a folder exits with status 2 and one line naming the file and the fix; rows whose drawn
value is NaN are left out with a warning naming their lines in the file.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

from .. import store
from ..layers import select_prompt_layers
from .cli import add_output_args, plain_text, run_main, setup_logging
from ..outputs import check_url, publish_files

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("lpt_probe.figures")  # not __name__, which is "__main__" under python -m


class Source(NamedTuple):
    file: str
    producer: str


SOURCES = {
    "performance": Source("sweep.csv", "python -m lpt_probe.sweep"),
    "convergence": Source("curves.csv", "python -m lpt_probe.sweep"),
    "mi": Source("mi.csv", "python -m lpt_probe.mi"),
    "projection": Source("projection.csv", "python -m lpt_probe.project"),
    "efficiency": Source("train_throughput.csv", "python benchmarks/bench_train.py"),
    "influence": Source("influence.csv", "python -m lpt_probe.influence"),
}


class MissingInput(FileNotFoundError):
    """An input table is absent; the message names the command that writes it."""


def find_input(results: str | Path, command: str) -> Path:
    """The CSV ``command`` reads: ``results`` itself if it is a file, else ``results/<file>``."""
    src = SOURCES[command]
    results = Path(results)
    path = results if results.is_file() else results / src.file
    if not path.is_file():
        where = f"{results} does not exist" if not results.exists() else f"{path} not found"
        raise MissingInput(f"{where}: `figures {command}` needs {src.file}, which `{src.producer}` writes; "
                           f"pass the folder it wrote (or the CSV itself) as RESULTS")
    return path


def read_table(path: Path, command: str) -> pd.DataFrame:
    """The table at ``path`` (found by :func:`find_input`); one that cannot be drawn (empty,
    a header without rows, not CSV) raises ``ValueError`` naming the file and the fix."""
    import pandas as pd  # here: only to draw (--help needs none)

    producer = SOURCES[command].producer
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty (not even a header row): nothing to draw; rerun `{producer}`, which "
                         f"writes it") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable CSV ({str(exc).strip().splitlines()[-1]}); rerun "
                         f"`{producer}`, which writes it") from None
    if df.empty:
        raise ValueError(f"{path} has a header but no rows: nothing to draw; `{producer}` writes rows as its work "
                         f"finishes, so rerun it (or pass the folder of a finished one)")
    with open(path, "rb") as f:  # lpt_probe ends every table with a newline: a file without one was cut short
        f.seek(-1, 2)
        if f.read(1) != b"\n":
            logger.warning("%s does not end with a newline: it was cut short (a copy or write that did not finish), "
                           "so the figure may lack rows; rerun `%s`, which writes it whole", path, producer)
    return df


# The columns each figure draws: rows where they are NaN are left out of the figure.
VALUES: dict[str, Callable[[argparse.Namespace], tuple[str, ...]]] = {
    "performance": lambda a: (a.metric,), "convergence": lambda a: (a.metric,), "mi": lambda a: (a.value,),
    "projection": lambda a: ("x", "y"), "efficiency": lambda a: ("tokens_per_second", "peak_memory_mb"),
    "influence": lambda a: ("value",)}


def warn_missing_values(df: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> list[int]:
    """Refuse a drawn column with a cell that is not a number (``ValueError`` naming its line);
    warn (naming the lines of ``path``) about rows whose drawn value is NaN: the figure
    leaves them out, so its lines join across the gap. Rows of runs that did not finish
    (``status`` other than complete) are left out anyway and not reported. Returns the lines."""
    import pandas as pd  # here: only to draw (--help needs none)

    for c in (c for c in columns if c in df.columns and not pd.api.types.is_numeric_dtype(df[c])):  # not numbers
        numbers = pd.to_numeric(df[c], errors="coerce")
        odd = df[numbers.isna() & df[c].notna()]
        if len(odd):
            raise ValueError(f"{path}: {c} must be numbers, but line {int(odd.index[0]) + 2} holds "
                             f"{str(odd[c].iloc[0])[:40]!r} ({len(odd)} such row(s)); rerun what wrote the file or fix "
                             f"those cells")
    rows = df[df["status"] == "complete"] if "status" in df.columns else df
    present = [c for c in columns if c in rows.columns]
    if not present:
        return []
    bad = rows[rows[present].isna().any(axis=1)]
    if bad.empty:
        return []
    lines = [int(i) + 2 for i in bad.index]  # line 1 is the header
    shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
    logger.warning("%s: %d row(s) have no %s (NaN) and are left out of the figure, so its lines join across "
                   "them: line(s) %s of the file; rerun what wrote them or drop those rows", path, len(lines),
                   " / ".join(present), shown)
    return lines


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-")


def groups(df: pd.DataFrame, cols: tuple[str, ...]) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(name suffix, title, rows) per combination of ``cols``; the suffix names only columns that vary."""
    cols = tuple(c for c in cols if c in df.columns)
    varying = [c for c in cols if df[c].nunique(dropna=True) > 1]
    if not cols:
        yield "", "", df
        return
    for key, sub in df.groupby(list(cols), sort=True, dropna=False):
        key = dict(zip(cols, key if isinstance(key, tuple) else (key,)))
        suffix = "".join(f"_{_slug(key[c])}" for c in varying)
        title = [str(key[c]) if c in ("task", "model") else f"{key[c]} {c}" for c in cols]
        yield suffix, " / ".join(title), sub


# Each drawer: (rows of one group, parsed args, plotting module, title) -> {name suffix: Figure}.
def _titled(ax, title: str):
    if title:
        ax.set_title(title)
    return ax.figure


def _draw_performance(df, args, P, title):
    hue = None if args.hue == "none" else args.hue
    return {"": _titled(P.plot_performance_vs_layer(df, metric=args.metric, hue=hue), title)}


def _layers(spec: str | None, df: pd.DataFrame) -> list[int] | None:
    """``--prompt-layers`` (default, all or a comma list: ``layers.select_prompt_layers``) over
    the prompt layers the table holds; None draws the plotting function's own default."""
    if spec is None:
        return None
    return select_prompt_layers(spec, df["prompt_layer"].dropna()) if "prompt_layer" in df.columns else None


def _draw_convergence(df, args, P, title):
    layers = _layers(args.prompt_layers, df)
    return {"": _titled(P.plot_convergence(df, prompt_layers=layers, metric=args.metric), title)}


def _draw_mi(df, args, P, title):
    band = None if args.band == "none" else args.band
    figs = {"": _titled(P.plot_mi_by_layer(df, value=args.value, band=band,
                                           prompt_layers=_layers(args.prompt_layers, df)), title)}
    lpt = df[(df["method"] == "lpt") & (df["control"] == "none")]
    if lpt["prompt_layer"].nunique() > 1:
        figs["heatmap"] = _titled(P.plot_mi_heatmap(df, value=args.value), title)
    return figs


def _draw_projection(df, args, P, title):
    agreement = None
    if args.agreement.is_file():
        rows = store.read_csv(args.agreement)
        agreement = rows.iloc[0].to_dict() if len(rows) else None
    return {"": P.plot_projection(df, agreement=agreement)}


def _draw_efficiency(df, args, P, title):
    fig = P.plot_efficiency(df)
    if title:
        fig.suptitle(title)
    return {"": fig}


def _draw_influence(df, args, P, title):
    fig = P.plot_influence_by_layer(df, checkpoint=args.checkpoint, prompt_layers=_layers(args.prompt_layers, df))
    if title:
        fig.suptitle(f"{title} / {args.checkpoint} prompts")
    return {"": fig}


DRAW: dict[str, tuple[Callable, tuple[str, ...], dict[str, str]]] = {  # how, group by, default file stems
    "performance": (_draw_performance, ("task", "model", "shots"), {"": "performance"}),
    "convergence": (_draw_convergence, ("task", "model", "generator"), {"": "convergence"}),
    "mi": (_draw_mi, ("task", "model", "probe", "representation"), {"": "mi_by_layer", "heatmap": "mi_heatmap"}),
    "projection": (_draw_projection, (), {"": "projection"}),
    "efficiency": (_draw_efficiency, ("model",), {"": "efficiency"}),
    "influence": (_draw_influence, ("task", "model", "generator"), {"": "influence_by_layer"}),
}


def _stem(names: dict[str, str], key: str, name: str | None) -> str:
    """``--name NAME`` gives NAME.pdf for the main figure and NAME_<key>.pdf for the others."""
    if name is None:
        return names[key]
    return f"{name}_{key}" if key else name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lpt_probe.figures", description=plain_text(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("results", metavar="RESULTS", help="the producer's output folder, or the CSV itself")
    common.add_argument("--out", default="artifacts/figures",
                        help="output folder or fsspec URL (default: artifacts/figures)")
    common.add_argument("--overwrite", action="store_true",
                        help="replace files in --out that lpt_probe did not write (refused otherwise)")
    common.add_argument("--png", action="store_true", help="also write a 200 dpi PNG beside each PDF")
    common.add_argument("--name", default=None, help="file name stem (default: the figure's name)")
    common.add_argument("--context", default="paper", choices=["paper", "notebook", "talk"],
                        help="font scale: paper (8 pt, default), notebook, talk")
    add_output_args(common)
    common.add_argument("--title", action=argparse.BooleanOptionalAction, default=True,
                        help="title each figure with its task / model (default: on)")
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join([*SOURCES, "section4"]) + "}")
    helps = {"performance": "metric vs prompt layer, mean ± std over seeds (Fig. 2 left, 4, 5)",
             "convergence": "dev metric vs training step for some prompt layers (Fig. 2 middle)",
             "mi": "I(h; y) per hidden state per prompt layer, with controls, and a heatmap (Fig. 2 right)",
             "projection": "sentence representations vs generated prompts in 2-D (Fig. 6)",
             "efficiency": "throughput and memory vs prompt layer, plus a markdown table (Table 10)",
             "influence": "the prompt's influence and the gradient signal per hidden state (Section 4)"}
    cmds = {c: sub.add_parser(c, parents=[common], help=h, description=f"{h}. Reads {SOURCES[c].file} "
                              f"(written by `{SOURCES[c].producer}`).") for c, h in helps.items()}
    cmds["performance"].add_argument("--metric", default="test_metric", choices=["test_metric", "dev_metric"])
    cmds["performance"].add_argument("--hue", default="generator",
                                     choices=["generator", "method", "shots", "task", "model", "none"],
                                     help="one line per value of this column (default: generator)")
    cmds["convergence"].add_argument("--metric", default="dev_metric", choices=["dev_metric", "train_loss"])
    cmds["convergence"].add_argument("--prompt-layers", default=None,
                                     help="default (1, the middle and the last), all, or a comma list such as 1,6,12 "
                                          "(default: default)")
    cmds["mi"].add_argument("--value", default="mi_bits", choices=["mi_bits", "accuracy", "macro_f1", "ce_bits"])
    cmds["mi"].add_argument("--prompt-layers", default=None,
                            help="prompt layers drawn as lines: all, default (1, middle, last) or a comma list such as "
                                 "1,6,12 (default: all; the heatmap has all)")
    cmds["mi"].add_argument("--band", default="seeds", choices=["seeds", "ci", "none"],
                            help="seeds: std over prompt seeds (default); ci: mean bootstrap 95%% CI; none")
    cmds["projection"].add_argument("--agreement", type=Path, default=None,
                                    help="agreement.csv to quote in the title (default: beside projection.csv)")
    cmds["influence"].add_argument("--checkpoint", default="trained",
                                   help="which prompts: init, trained or step-N (default: trained)")
    cmds["influence"].add_argument("--prompt-layers", default=None,
                                   help="lines drawn: all, default (1, middle, last) or a comma list such as 1,6 "
                                        "(default: all)")
    s4 = sub.add_parser("section4", help="Section 4 on one page: accuracy and convergence against PL, I(h; y), "
                        "influence and gradient coherence against PL",
                        description="One paper-width PDF, 2 x 3 panels, from a sweep folder (sweep.csv, curves.csv: "
                        "python -m lpt_probe.sweep), an mi folder (mi.csv: python -m lpt_probe.mi) and an influence "
                        "folder (influence.csv: python -m lpt_probe.influence).")
    for flag, what in (("--sweep", "the sweep folder"), ("--mi", "the mi folder"),
                       ("--influence", "the influence folder")):
        s4.add_argument(flag, required=True, type=Path, help=f"{what} (or its CSV)")
    for a in common._actions:  # the shared options, less RESULTS
        if a.option_strings and a.dest != "help":
            s4._add_action(a)
    cmds["efficiency"].add_argument("--table-format", default="markdown", choices=["markdown", "latex"],
                                    help="format of the table written beside the figure (.md or .tex)")
    return p


def run_section4(args: argparse.Namespace, out: Path) -> list[Path]:
    """The Section 4 page from three producers' folders, drawn into ``out``; returns the path(s) written."""
    import matplotlib.pyplot as plt  # here: only to draw, after main chose the backend

    from .. import viz as P  # here: matplotlib, only to draw

    folder = args.sweep.parent if args.sweep.is_file() else args.sweep
    tables = []
    for where, cmd, values in ((folder, "performance", ("test_metric",)), (folder, "convergence", ("dev_metric",)),
                               (args.mi, "mi", ("mi_bits",)), (args.influence, "influence", ("value",))):
        path = find_input(where, cmd)
        tables.append(read_table(path, cmd))
        warn_missing_values(tables[-1], path, values)
    with P.paper_style(args.context):
        fig = P.plot_section4(*tables)
        if args.title:
            inf = tables[3]
            fig.suptitle(f"{inf['task'].iloc[0]} / {inf['model'].iloc[0]}")
        written = P.save_figure(fig, out / f"{args.name or 'section4'}.pdf", png=args.png)
        plt.close(fig)
    return written


def run(args: argparse.Namespace) -> list[Path | str]:
    """Draw every figure of one subcommand, then put them into ``--out``; returns where they went.

    The figures are drawn into a temporary folder and placed only when all are drawn
    (``outputs.publish_files``): a URL gets them uploaded; a local folder gets them unless one
    would replace a file lpt_probe did not write (refused, nothing written, unless ``--overwrite``)."""
    check_url(str(args.out))  # a URL whose filesystem is not installed: one line naming the package
    store.check_output_folder(args.out)  # before any work: a file in the way, or no write permission
    with tempfile.TemporaryDirectory(prefix="lpt_figures_") as tmp:
        drawn = run_section4(args, Path(tmp)) if args.command == "section4" else draw_all(args, Path(tmp))
        return publish_files(tmp, [str(Path(p).relative_to(tmp)) for p in drawn], args.out, args.overwrite)


def draw_all(args: argparse.Namespace, out: Path) -> list[Path]:
    """Draw every figure of one subcommand into ``out``; returns the paths written."""
    import matplotlib.pyplot as plt  # here: only to draw, after main chose the backend

    from .. import viz as P  # here: matplotlib, only to draw

    path = find_input(args.results, args.command)
    df = read_table(path, args.command)
    warn_missing_values(df, path, VALUES[args.command](args))
    if args.command == "projection":
        if args.agreement is None:
            args.agreement = path.parent / "agreement.csv"  # optional: written by the same command
        elif not args.agreement.is_file():
            raise MissingInput(f"--agreement {args.agreement} not found; `{SOURCES['projection'].producer}` "
                               f"writes agreement.csv beside projection.csv")
    draw, by, names = DRAW[args.command]
    by = tuple(c for c in by if c != getattr(args, "hue", None))  # --hue task: one figure, a line per task
    written = []
    with P.paper_style(args.context):
        for suffix, title, sub in groups(df, by):
            for extra, fig in draw(sub, args, P, title if args.title else "").items():
                written += P.save_figure(fig, out / f"{_stem(names, extra, args.name)}{suffix}.pdf", png=args.png)
                plt.close(fig)
            if args.command == "efficiency":
                ext = ".md" if args.table_format == "markdown" else ".tex"
                table = P.efficiency_table(sub, fmt=args.table_format)
                written.append(store.atomic_write_text(out / f"{_stem(names, '', args.name)}{suffix}{ext}", table))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import matplotlib  # here: the backend is chosen before pyplot loads (and --help loads neither)

    matplotlib.use("Agg")  # files only: never open a window
    setup_logging(args)

    def body() -> int:
        for path in run(args):
            print(path)
        return 0

    return run_main(parser, body)


if __name__ == "__main__":
    sys.exit(main())
