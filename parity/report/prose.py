"""The fixed prose of the markdown report (parity.report.markdown and its section modules), one named text
per paragraph or sentence; placeholders are filled with ``str.format``, so a branch picks its text and the
code that fills it stays short. Sections on the seed audit's terms keep theirs in ``seed_sections`` and the
factorial's readings in ``factorial_report``."""

from __future__ import annotations

# ------------------------------------------------------------------------------------------ top

HEADER = (
    "# Parity report: {name}\n\n"
    "Which differences between the notebook and the original MAMBA-GINR cost how many dB of PSNR, measured, "
    "against the seed audit's claims (`SEED-notebook-vs-original.md`).\n\n"
    "Regenerate (runs resume; finished runs are kept):\n\n```bash\n{commands}\n```")

ANSWER_TITLE = "## The answer at this budget"

NO_GAP = "No seed has finished both baselines yet: there is no gap to report."

GAP = (
    "**Gap: {mean:+.2f} dB** (original minus notebook, mean per-image PSNR on the same test images, {n} "
    "seed{plural}; 95% interval {interval}{origin}). Original {original} dB, notebook {notebook} dB per image; as "
    "each source reports it (its own aggregation): original {original_reported} dB, notebook {notebook_reported} "
    "dB. Baseline runs: {notebook_run} (notebook), {original_run} (original).")

GAP_FROM_CORNERS = " from the two corner cells, each with its own seed variance (Welch, df {df:.1f})"

# ------------------------------------------------------------------------------------------ collapse

COLLAPSED_RUNS = (
    "**Collapsed runs.** {count} finished run(s) ended within {limit:g} dB of one constant colour ({constant:.2f} "
    "dB): {listed}. Their models output about one colour: a cell holding them measures a training failure at this "
    "budget (for instance a learning rate the cell's architecture does not survive), and every effect and share "
    "involving it carries that failure. Collapse is an outcome of its own: each variant's rate (collapsed of "
    "finished seeds) with its exact 95% interval (Clopper-Pearson, which holds at 2-3 seeds where a normal "
    "approximation does not):\n\n{table}")

# ------------------------------------------------------------------------------------------ regime and budget

NO_REFERENCES = "Reference levels: not recorded for these matrices (made before `parity ablate` stored them)."

REGIME = "**Regime.** {statement}\n\nTrivial predictors on the same {images} test images:\n\n{table}"

REGIME_SENTENCE = "The {side} baseline {where}."

# Where a baseline stands against the trivial predictors, lowest first (regime_sentence picks one).
ON_PLATEAU = ("is on the constant-colour plateau ({mean:.2f} dB vs {constant:.2f}): it has learned one colour, "
              "not images")
BELOW_OWN_COLOUR = ("is between one constant colour and each image's own mean colour ({mean:.2f} dB; {constant:.2f} "
                    "and {own:.2f}): it has learned colour, not images")
AT_OWN_COLOUR = ("is at the per-image-mean-colour level ({mean:.2f} dB vs {own:.2f}): it has learned each image's "
                 "colour, not its structure")
COARSE_STRUCTURE = "is {above:.2f} dB above each image's mean colour ({own:.2f}): coarse structure, barely"
IMAGE_STRUCTURE = "is {above:.2f} dB above each image's mean colour ({own:.2f}): it reconstructs image structure"

PROXY = (
    "**This is a proxy** (preset `{preset}`): the ratio of LP tokens to patches, the training length and the width "
    "are not the paper's, so its dB and shares are read at this regime, not the paper's.{bicubic}\n\n{table}")

BICUBIC = (
    " The original baseline is {distance:.2f} dB {side} bicubic upsampling of a 2x area-downsampled image "
    "({bicubic:.2f} dB), a reference that sees a quarter of the pixels: {reading}")
BICUBIC_BELOW = "the proxy's autoencoder recovers less detail than that."
BICUBIC_ABOVE = "it recovers more detail than that."

BUDGET_TITLE = "## What this budget cannot show\n\n"

NO_PAPER_RUN = (
    "No run of the `paper` preset (the sources' full protocols on all of CIFAR-10, a GPU job) is in this report, so "
    "no GPU run backs any number here.")

ONE_SEED_LIMIT = (
    "With one seed the spread between seeds is unknown: no effect is tested, and a single run's luck is not "
    "separated from a difference's effect.")
SEEDS_LIMIT = (
    "With {seeds} seeds, effects whose family-wise interval includes 0 are 'not measured'; smaller effects than "
    "the intervals resolve may exist (each matrix's section gives the smallest effect it detects with 80% power, at "
    "its seeds and at 5 and 8).")
FULL_PROTOCOL_LIMIT = (
    "The seed audit's expectation after the fixes (28-32 dB on CIFAR-10) refers to the full protocol; only a run "
    "of the paper preset can test it.")

PROCEDURAL_LIMIT = (
    "The images are procedural, not CIFAR-10: absolute PSNRs say nothing about the sources' numbers, and effects "
    "on natural images may differ.")
OTHER_DATA_LIMIT = (
    "The data are read as '{dataset}': absolute PSNRs compare with the sources' only if that folder holds "
    "CIFAR-10.")
IMAGE_SIZE_LIMIT = (
    "Images are {size}×{size} px{proxy}, not CIFAR-10's 32×32: patch and LP counts scale differently, and absolute "
    "PSNRs are not comparable with 32×32 ones.")
DOWNSAMPLED_PROXY = " (a proxy: the stored {source}×{source} images area-downsampled)"
TRAIN_SUBSET_LIMIT = (
    "Training uses {images:,} images instead of the sources' {official:,} (notebook) and {numbered:,} (original).")
TEST_SUBSET_LIMIT = (
    "PSNR is measured on {images:,} test images, not the full {official:,} (official split) or {numbered:,} (the "
    "original's range).")

EPOCHS_BY_SIDE_LIMIT = (
    "Runs train {notebook} epochs (notebook side) and {original} (original side) against the sources' "
    "{source_notebook} and {source_original}.")
EPOCHS_LIMIT = "Runs train {epochs} epochs against the sources' {source_notebook} and {source_original}."
MAX_STEPS_LIMIT = (
    "Each run stops after {steps:,} steps: {notebook_share} of the notebook's {notebook:,} and {original_share} of "
    "the original's {original:,}.")
TRUNCATED_LIMIT = (
    "Differences that act over the whole schedule (epochs, lr, warmup, lr-horizon) and the architectural ones that "
    "pay off late in training are judged here on a truncated run; their verdicts may not hold at full length.")

PRESET = "**Preset `{preset}`**{overrides}: {description}.\n\n{table}"

# ------------------------------------------------------------------------------------------ attribution

NO_FACTORIAL = (
    "**Attribution.** No factorial matrix here: `parity ablate --matrix factorial` attributes the gap to groups of "
    "differences (shares that add up to it).")

ATTRIBUTION_PENDING = "**Attribution.** Not yet computable ({why})."

ATTRIBUTION = (
    "**Attribution of the gap{second}** (`{name}`, {seeds} seeds, {cells} cells; run folders under {folder}). "
    "Each group's Shapley share averages its gain over every order of adding the groups to the notebook, so the "
    "shares add up exactly to the gap between the factorial's corners; 95% intervals, not adjusted across groups. "
    "{intervals_why}{sub_design}\n\n{table}{picture}")
SECOND_BUDGET = " at a second budget"
SUB_DESIGN = (
    " A sub-design: {held} held at the notebook's values, so the gap here is from the notebook to notebook + "
    "{added}, not to the original.")

SHARES_THREE_WAYS = "**The shares three ways.** {intro}\n\n{table}"

STABILITY = (
    "**Are the shares stable across budgets?** The same factorial at each budget (shares as a percentage of that "
    "budget's gap):\n\n{table}")

GROUP_CLAIMS = (
    "**The seed audit's claims at this budget.** A claim about one difference is tested only where a single-toggle "
    "matrix varied it; otherwise only its group's contribution is measured.\n\n{table}")

# What the report says of one seed-audit claim, by what was run (group_claims picks one).
OWN_LEAVE_ONE_OUT = "{mean:+.2f} {interval}: {verdict} (leave-one-out)"
GROUP_ONLY = (
    "untestable alone at this budget; its group `{group}`: leave-one-out {mean:+.2f} {interval} ({label}; Holm "
    "over the {groups} groups, at {level:.3g}), share {share:+.2f}")
UNTESTABLE = "untestable at this budget (no matrix varies it)"

# ------------------------------------------------------------------------------------------ evaluation side

EVALUATION_SIDE = (
    "## Evaluation-side differences\n\nThese change the number reported, not the model: computed from each "
    "baseline run's stored per-image values, not from training.\n\n{table}\n\n{data_split}")
AGGREGATION_EFFECT = (
    "mean per-image PSNR minus batch-MSE PSNR (batches of {batch}): the same model, reported two ways")
DATA_SPLIT = (
    "`data-split`: in matrices whose preset sets `data.eval_split`, every variant is scored on the same test "
    "images, and the first-N training images are the same in both splits, so the split changes nothing measured "
    "here; on the sources' full test sets it changes which 10,000 or 5,000 images are scored, a change of images, "
    "not of the model.")
NO_PER_IMAGE_VALUES = "No baseline run has per-image values stored yet."

# ------------------------------------------------------------------------------------------ per matrix

MATRIX_SECTION = "## {kind}: `{name}`\n\n{source}\n\n### Effects\n\n{body}\n\n### Results per variant\n\n{table}"

RUN_FOLDERS = (
    "Run folders: `{folder}/<variant>/seed-<k>/` (seeds {seeds}); results from `metrics.json`, effects paired by "
    "seed.")

CUMULATIVE_ORDER = (
    "The gains below depend on the order in which the differences are added (here: most severe seed claim first); "
    "the factorial's Shapley attribution is the order-free answer.\n\n")

NO_TOGGLE = "No variant in this matrix toggles a difference."

SENSITIVITY = (
    "\n\n**Sensitivity.** With its pooled seed variance, this matrix detects an effect of {own} dB with 80% power "
    "at its {seeds} seeds ({more}): the noncentral t distribution at Holm's first step over its {family} judged "
    "effects ({alpha:g}/{family}). Smaller effects than that may exist behind 'not measured'.")

NOT_ANALYSED = "{meaning}. Not analysed: {why}."

FACTORIAL_INTRO = (
    "{meaning}. A main effect is the gain of a group averaged over the other groups' settings; an interaction is "
    "how much one group's gain changes when the other is switched on. {intervals_why} {pairing} Intervals are 95% "
    "and not adjusted; the Holm columns are the family-wise p-values a 'measured' label reads.")

GROUP_LEAVE_ONE_OUT = (
    "**Leave one group out, from the original** (cells of this factorial; the two cells' own variances; one Holm "
    "family over the groups, so the label keeps the chance of any false 'measured' at 0.05):")

MAIN_EFFECTS_THREE_WAYS = "**Main effects three ways.** {intro}"
LEAVE_ONE_OUTS_THREE_WAYS = "**Group leave-one-outs three ways:**"
CELLS = "**Cells**, with each cell's collapse rate (collapsed of finished seeds, exact 95% interval):"

# ------------------------------------------------------------------------------------------ figures

FIGURE = "![{alt}]({file})\n\n*{caption}*"
JITTER_CAPTION = "PSNR under test jitter, trained with and without jitter (bands: 95% seed intervals)"
SAMPLES = "![{variant} samples]({file})\n\n*{variant}: ground truth (top) and reconstruction (bottom), from {run}*"
NO_CHART = "No finished run to plot."

# ------------------------------------------------------------------------------------------ across matrices

HOW_TO_READ = "## How to read the effects\n\n{meanings}\n\n{rule}\n\n{coverage}"

# What the rule's intervals and labels deliver, as measured by the simulations of tests/parity/report
# (test_stats.py, test_coverage.py; the numbers are asserted there).
COVERAGE_TEXT = (
    "What this rule delivers, by simulation (`tests/parity/report/test_stats.py`, `test_coverage.py`). Labels: with "
    "24 differences, 3 seeds and 0.3 dB of seed spread per run, a 1 dB effect is called measured about 78% of the "
    "time, and a matrix of null effects yields any false 'measured' in under 5% of matrices; a factorial shaped "
    "like the CIFAR-10 study's (its cells' own seed spreads, 3 seeds) with no group leave-one-out effect gets a "
    "false 'measured' leave-one-out in 3.5% of designs (the earlier unadjusted, pooled labels: 39%). Intervals: "
    "with 24 true 1.5 dB effects, some Holm interval misses its true value in 25% of matrices, the simultaneous "
    "intervals the severity words read in 3%; on the study-shaped cells each 95% share and main-effect interval "
    "covers 94-96% with each cell's own variance (the pooled one covered 89% for the decoder's share), and the "
    "four shares' Bonferroni intervals hold together in 96% (94% without the collapsed runs). Where collapse is a "
    "seed's luck (the study's partly collapsed cells collapsing at random at their observed rates), no reading at "
    "3 seeds covers 95% for every all-runs share (the decoder's: 86%): a cell whose seeds happen not to collapse "
    "looks like a clean cell. Hence collapse rates beside the PSNR, and the reading without collapsed runs beside "
    "the one with all of them.")

IMPROVEMENTS_SECTION = (
    "## Improvements\n\nFixes for the original's defects and the seed audit's jitter recommendation, outside the "
    "parity set: each is applied on top of the original.\n\n{table}")

DEFECTS_SECTION = "## Defects of the original\n\nReproduced by the faithful port.\n\n{table}"
NO_FIX = "no fix toggle (recorded only)"

ALL_FINISHED = "## Failed and skipped runs\n\nNone: every run finished."
UNFINISHED = (
    "## Failed and skipped runs\n\nListed, never dropped: effects involving them have a smaller n or none.\n\n"
    "{table}")
PARTS_MISSING = (
    "**Finished runs with parts missing.** Their metrics count everywhere; a run without history.jsonl is left out "
    "of the training curves and the matched-budget readings, which then average fewer seeds:\n\n{table}")
