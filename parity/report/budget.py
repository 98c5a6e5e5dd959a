"""The report on its budget: where each baseline stands against the trivial predictors (the regime), how far the
proxy is from the paper's protocols, what the setting's data and schedule leave out compared with the sources'
(the limits), and the setting itself: each matrix's machine and each preset's changes to the sources' fields.
The section functions take the report's Document (parity.report.markdown)."""

from __future__ import annotations

import json

import pandas as pd

from ..experiment.config import notebook_baseline, original_baseline
from . import prose
from .format import setting_value, share_percent
from .regime import SOURCE_TEST_IMAGES, SOURCE_TRAIN_IMAGES, bicubic_distance, proxy_regime, source_steps
from .results import seed_mean
from .tables import MISSING, number, table

# ------------------------------------------------------------------------------------------ regime


def regime_sentence(side: str, values: dict, refs: dict | None) -> str:
    """Where a baseline stands against the trivial predictors, in one sentence."""
    mean = seed_mean(values)
    if mean is None or not refs:
        return ""
    constant, own = refs["constant_colour_db"], refs["per_image_mean_colour_db"]
    above = mean - own
    if mean < constant + 0.5:
        where = prose.ON_PLATEAU
    elif above < -0.5:
        where = prose.BELOW_OWN_COLOUR
    elif above < 0.5:
        where = prose.AT_OWN_COLOUR
    elif above < 3.0:
        where = prose.COARSE_STRUCTURE
    else:
        where = prose.IMAGE_STRUCTURE
    where = where.format(mean=mean, constant=constant, own=own, above=above)
    return prose.REGIME_SENTENCE.format(side=side, where=where)


def regime_text(doc) -> str:
    """The regime paragraph: each baseline's sentence and the trivial predictors' table."""
    refs = doc.references
    if not refs:
        return prose.NO_REFERENCES
    rows = [{"predictor": "one constant colour (the training set's mean)", "PSNR (dB, per image)":
             f"{refs['constant_colour_db']:.2f}"},
            {"predictor": "each image's own mean colour", "PSNR (dB, per image)":
             f"{refs['per_image_mean_colour_db']:.2f}"}]
    if refs.get("bicubic_x2_db") is not None:
        rows.append({"predictor": "bicubic upsampling of a 2x area-downsampled image (super-resolution "
                                  "reference)", "PSNR (dB, per image)": f"{refs['bicubic_x2_db']:.2f}"})
    statement = " ".join(regime_sentence(side, doc.baselines[side]["psnr"], refs)
                         for side in ("notebook", "original") if doc.baselines.get(side))
    return prose.REGIME.format(statement=statement, images=refs.get("images", "?"), table=table(pd.DataFrame(rows)))


def proxy_text(doc) -> str:
    """The proxy's regime against the paper's protocols, from the first matrix that recorded baselines."""
    matrix = doc.baselines_matrix()
    rows = proxy_regime(matrix.baselines) if matrix is not None else []
    if not rows:
        return ""
    shown = [{"side": r["side"], "LP tokens / patches": f"{r['num_lp']} / {r['patches']} = "
                                                        f"{number(r['lp_per_patch'], 2)}",
              "paper": f"{r['paper_num_lp']} / {r['paper_patches']} = {number(r['paper_lp_per_patch'], 2)}",
              "optimiser steps": f"{r['steps']:,}" if r["steps"] else MISSING,
              "of the paper's": f"{share_percent(r['steps_fraction'])} of {r['paper_steps']:,}"
              if r["steps_fraction"] else MISSING,
              "width (model.dim)": f"{r['dim']} vs {r['paper_dim']}"} for r in rows]
    return prose.PROXY.format(preset=matrix.preset, bicubic=bicubic_text(doc), table=table(pd.DataFrame(shown)))


def bicubic_text(doc) -> str:
    """The original baseline against bicubic upsampling, in a sentence ('' without the reference)."""
    og = doc.baselines.get("original")
    distance = bicubic_distance(seed_mean(og["psnr"]) if og else None, doc.references)
    if distance is None:
        return ""
    return prose.BICUBIC.format(distance=abs(distance), side="below" if distance < 0 else "above",
                                bicubic=doc.references["bicubic_x2_db"],
                                reading=prose.BICUBIC_BELOW if distance < 0 else prose.BICUBIC_ABOVE)


# ------------------------------------------------------------------------------------------ limits


def budget_limits(setting: dict, seeds: int) -> list[str]:
    """Sentences on what the setting's budget leaves out, compared with the sources' protocols."""
    nb, og = notebook_baseline(), original_baseline()
    out = _data_limits(setting)
    out += _schedule_limits(setting, (nb.train.epochs, og.train.epochs))
    out.append(prose.ONE_SEED_LIMIT if seeds == 1 else prose.SEEDS_LIMIT.format(seeds=seeds))
    out.append(prose.FULL_PROTOCOL_LIMIT)
    return out


def _data_limits(setting: dict) -> list[str]:
    out = []
    dataset = setting.get("dataset")
    if dataset == "procedural":
        out.append(prose.PROCEDURAL_LIMIT)
    elif dataset not in (None, "cifar10"):
        out.append(prose.OTHER_DATA_LIMIT.format(dataset=dataset))
    size = setting.get("image_size")
    if size not in (None, 32):
        proxy = (prose.DOWNSAMPLED_PROXY.format(source=setting["source_size"])
                 if setting.get("source_size") not in (None, size) else "")
        out.append(prose.IMAGE_SIZE_LIMIT.format(size=size, proxy=proxy))
    if setting.get("train_subset"):
        out.append(prose.TRAIN_SUBSET_LIMIT.format(images=int(setting["train_subset"]),
                                                   official=SOURCE_TRAIN_IMAGES["official"],
                                                   numbered=SOURCE_TRAIN_IMAGES["numbered"]))
    if setting.get("test_subset"):
        out.append(prose.TEST_SUBSET_LIMIT.format(images=int(setting["test_subset"]),
                                                  official=SOURCE_TEST_IMAGES["official"],
                                                  numbered=SOURCE_TEST_IMAGES["numbered"]))
    return out


def _schedule_limits(setting: dict, source_epochs: tuple[int, int]) -> list[str]:
    out = []
    sources = {"source_notebook": source_epochs[0], "source_original": source_epochs[1]}
    epochs = setting.get("epochs (notebook, original)") or setting.get("epochs")
    if isinstance(epochs, (list, tuple)) and len(epochs) == 2 and tuple(epochs) != source_epochs:
        out.append(prose.EPOCHS_BY_SIDE_LIMIT.format(notebook=epochs[0], original=epochs[1], **sources))
    elif isinstance(epochs, (int, float)) and epochs not in source_epochs:
        out.append(prose.EPOCHS_LIMIT.format(epochs=epochs, **sources))
    max_steps = setting.get("max_steps")
    if max_steps:
        nb, og = source_steps("notebook"), source_steps("original")
        out.append(prose.MAX_STEPS_LIMIT.format(steps=int(max_steps), notebook_share=share_percent(max_steps / nb),
                                                notebook=nb, original_share=share_percent(max_steps / og),
                                                original=og))
    if out:
        out.append(prose.TRUNCATED_LIMIT)
    return out


def budget_section(doc) -> str:
    """What the budget cannot show: one paragraph per distinct setting (and seed count) of the matrices."""
    groups: dict[str, list] = {}
    for matrix in doc.results.matrices.itertuples():
        setting = budget_setting(matrix.baselines)
        key = json.dumps([setting, len(matrix.seeds)], sort_keys=True, default=str)
        groups.setdefault(key, []).append((matrix, setting))
    paragraphs = []
    for matrices in groups.values():
        matrix, setting = matrices[0]
        text = " ".join(budget_limits(setting, len(matrix.seeds)))
        prefix = f"**{', '.join(f'`{m.matrix}`' for m, _ in matrices)}**: " if len(groups) > 1 else ""
        paragraphs.append(prefix + text)
    if "paper" not in set(doc.results.matrices["preset"]):
        paragraphs.append(prose.NO_PAPER_RUN)
    return prose.BUDGET_TITLE + "\n\n".join(paragraphs)


# ------------------------------------------------------------------------------------------ setting


def budget_setting(baselines: dict) -> dict:
    """The few fields ``budget_limits`` reads, from a matrix's recorded baselines."""
    nb, og = (baselines or {}).get("notebook") or {}, (baselines or {}).get("original") or {}
    data, train = nb.get("data") or {}, nb.get("train") or {}
    return {"dataset": data.get("dataset"), "image_size": data.get("image_size"),
            "source_size": data.get("source_size"), "train_subset": data.get("train_subset"),
            "test_subset": data.get("test_subset"), "max_steps": train.get("max_steps"),
            "epochs (notebook, original)": [train.get("epochs"), (og.get("train") or {}).get("epochs")]}


def preset_changes(baselines: dict) -> pd.DataFrame:
    """The fields where a preset's baselines differ from the sources' (the preset's scaling), side by side."""
    from ..experiment.config import field_paths

    sources = {"notebook": notebook_baseline().to_dict(), "original": original_baseline().to_dict()}
    rows = []
    for path in field_paths():
        section, key = path.split(".")
        values = {side: ((baselines.get(side) or {}).get(section) or {}).get(key) for side in sources}
        source = {side: sources[side][section][key] for side in sources}
        if values != source and any(v is not None for v in values.values()):
            rows.append({"field": f"`{path}`", "notebook (preset)": setting_value(values["notebook"]),
                         "original (preset)": setting_value(values["original"]),
                         "sources (notebook / original)": f"{setting_value(source['notebook'])} / "
                                                          f"{setting_value(source['original'])}"})
    return pd.DataFrame(rows)


def setting_section(doc) -> str:
    """What differs between the matrices (one row each), then each preset once: its description and the
    fields its baselines change from the sources'."""
    rows = []
    for m in doc.results.matrices.itertuples():
        env = m.environment or {}
        rows.append({"matrix": doc.folder_link(f"{m.matrix}", m.dir), "kind": m.kind, "preset": f"`{m.preset}`",
                     "seeds": len(m.seeds), "groups": ", ".join(m.groups or []) or MISSING,
                     "overrides": ", ".join(f"`{o}`" for o in m.overrides) or MISSING,
                     "machine": f"{env.get('machine', '?')}, {env.get('threads', '?')} thread(s), torch "
                                f"{env.get('torch', '?')}", "created": m.created})
    parts = ["## Setting", table(pd.DataFrame(rows))]
    seen = set()
    for m in doc.results.matrices.itertuples():
        key = json.dumps([m.preset, m.overrides], default=str)
        if key in seen or not m.baselines:
            continue
        seen.add(key)
        overrides = " with " + ", ".join(m.overrides) if m.overrides else ""
        parts.append(prose.PRESET.format(preset=m.preset, overrides=overrides, description=m.preset_description or "",
                                         table=table(preset_changes(m.baselines))))
    return "\n\n".join(parts)


__all__ = ["bicubic_text", "budget_limits", "budget_section", "budget_setting", "preset_changes", "proxy_text",
           "regime_sentence", "regime_text", "setting_section", "source_steps"]
