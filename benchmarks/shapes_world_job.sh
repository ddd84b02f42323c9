#!/bin/bash
# The shapes world within the issue's budget on one GPU, as one job: the `small` tokenizer (2400 steps, 3-4 minutes
# with its renders: the same tokenizer on any machine), then ONE unified run (the rest of 19.5 minutes, so tokenizer
# and unified model take 19.5 of the 20), beside it a plain in-context DiT on
# the same tokenizer's latents as the reference of what the latents allow (benchmarks/latent_dit_baseline.py, a light
# process whose batches are rendered in workers; DIT_POSITIONS="learnt sincos" for one with each kind of positions,
# default sin-cos: 64.6% in 9 minutes at 128 px against learnt positions' 39.6%), then `hydra-x eval shapes` on the
# whole held-out set (24 prompts a category) and the instruction effect of the edits. Run from the repository root:
#
#     R=/path/to/results bash benchmarks/shapes_world_job.sh       # writes R/A/..., R/dit-*, R/instr-*.txt, R/DONE
#
# R/results.tgz holds what the job has written so far without weights, renders or TensorBoard files (rewritten after
# the unified runs, the scoring and at the end), so a machine lent for a limited time can hand back a part. Its
# PACKED file names the phase it was written after (trained, scored, done): an archive taken after training has no
# scores yet, and only R/DONE or a PACKED of "done" says that nothing more is coming.
#
# SIZE=64 FRAMES=9: pictures of 64 px (16 visual tokens, not 64) and clips of 9 frames; EXAMPLES=512: twice the
# examples a unified step (at 64 px still less GPU work than 256 at 128 px). GPU memory at 64 px: a 1024-example arm
# peaks at 59.7 GiB, so on an 80 GB card no second arm (512 examples: about 23 GiB in its first step) fits beside it;
# two arms of 512 held 69 GB together (an H200, as nvidia-smi counts it).
# Overrides of the unified run: ARM="key=value,..." (default: the `small` recipe with edits weighted 4, two attention
# layers in the flow head that join after 84% of the run's planned steps (a run's step 800 of 954; a share, not a
# step, so that a slower machine's shorter plan still gets them), grid positions from a random start, rows padded
# to no multiple, and the independent layout: the best run's first arm but for STI). ARM2="key=value,...": a second
# run beside it; ARM2=sti: the first arm with the STI layout, the paper's ablation side by side. The best run yet
# (docs/benchmarks.md, on an H100: STI understanding 98.3%, editing 80%, generation 73.6%; the independent layout
# beside it 93.3%, 52.5%, 79.9%, keeping less of the edits' sources):
#
#     STI=model.edit_layout=sti,data.task_ratios.edit=4,model.head_attention_layers=2,head_attention_from_share=0.84,model.visual_positions=true,model.visual_positions_zero_init=false,row_multiple=1,data.task_ratios.image_gen=4
#     TOKENIZER_STEPS=6000 SIZE=64 FRAMES=9 EXAMPLES=512 DIT_POSITIONS= UNIFIED_MINUTES=14 ARM=$STI \
#       ARM2="${STI/edit_layout=sti/edit_layout=independent}" R=... bash benchmarks/shapes_world_job.sh
set -x
R=${R:-runs/shapes-world-job}
ARM=${ARM:-model.edit_layout=independent,data.task_ratios.edit=4,model.head_attention_layers=2,head_attention_from_share=0.84,model.visual_positions=true,model.visual_positions_zero_init=false,row_multiple=1}
TOKENIZER_STEPS=${TOKENIZER_STEPS-2400}  # empty: 3.5 minutes instead (2055 to 2458 steps, by the machine)
SIZE=${SIZE:-128}     # picture side of renders, runs and scores; 64 gives a quarter of the visual tokens
FRAMES=${FRAMES:-17}  # frames of a clip
DIT_POSITIONS=${DIT_POSITIONS-sincos}  # empty: no DiT, the unified run alone (DiTs beside it took 28% of its speed)
CLIPS_WEIGHT=${CLIPS_WEIGHT:-}  # the tokenizer's shapes clips' weight (empty: half the images', a third of batches)
TOKENIZER_EXTRA=${TOKENIZER_EXTRA:-}  # overrides of the tokenizer run, e.g. model.temporal_unfold=shared
SAMPLES=${SAMPLES:-4}  # images scored a generation prompt, as GenEval draws them (one sample: a 5-point spread)
EXAMPLES=${EXAMPLES:-256}  # examples a unified step (the recipe's 256); the steps are bound by the host, not the GPU
ARM2=${ARM2:-}  # a second unified run beside the first, the same budget (each host-bound run leaves the GPU idle)
if [ "$ARM2" = sti ]; then  # the first arm with the other layout
  case "$ARM" in *edit_layout=independent*) ARM2=${ARM/edit_layout=independent/edit_layout=sti} ;; *) ARM2=$ARM,model.edit_layout=sti ;; esac
fi
ARMS=("one=$ARM")
[ -n "$ARM2" ] && ARMS+=("two=$ARM2")
WORKERS=$(( ${#ARMS[@]} == 1 ? 6 : 4 ))  # data workers a run: 16 cores for the runs, their workers and the DiT
mkdir -p "$R"
T0=$(date +%s)
pack() {  # $1: the phase just finished, into R/PACKED.
  # Written outside R, moved in under a dot name and renamed, so a copy taken meanwhile is a whole archive.
  # Written inside R, tar could find R changed by its own output ("file changed as we read it", exit 1) and the
  # archive was not renamed: it stayed as the last pack left it. Exit 1 (a file that grew as it was read, such as a
  # log of the run beside it) still gives a whole archive; 2 and above do not.
  local tmp="${R%/}.pack.tgz" rc=0
  echo "$1 at $(( $(date +%s) - T0 )) s" > "$R/PACKED"
  tar czf "$tmp" -C "$R" --exclude='./.results.tgz' --exclude='./results.tgz' --exclude='*/checkpoints' \
    --exclude='*.safetensors' --exclude='shapes-images' --exclude='shapes-clips' --exclude='*/tensorboard' . || rc=$?
  if [ "$rc" -le 1 ]; then mv "$tmp" "$R/.results.tgz" && mv "$R/.results.tgz" "$R/results.tgz"; else
    echo "results archive: tar exit $rc, the last archive kept"; fi
}
# SmolLM2's conversion (47 s on a fresh machine) runs beside the tokenizer phase, which does not need it.
python3 -m hydra_x.unified.llm convert-smollm2 > "$R/convert.out" 2> "$R/convert.log" &
CONVERT=$!
# Beside the tokenizer phase too, once SmolLM2 is converted: each arm's compile warm-up (shapes_world_run.py's warm
# phase: 30 steps from a random tokenizer of the same architecture), whose compile caches on disk the timed runs then
# read; stopped when the tokenizer is done, wherever it is (the caches' files are written whole). In a session of
# its own (setsid) so that one kill stops its data and compile workers too. WARM=0: none; WARM=first: the first arm
# alone (arms of one architecture share their graphs; each warm-up holds as much GPU memory as its arm).
WARM=${WARM:-1}
# torch.compile also keeps which sizes turned dynamic ("PGO"), on disk only under a job id: with one id for the
# warm-up and the timed runs (and no other process), these compile the sizes the warm-up found changing as dynamic
# from their first step instead of a static graph first and a recompilation at the first change.
COMPILE_ID=${COMPILE_ID:-hydra-x-shapes-world}
WARM_ARMS=("${ARMS[@]}")
[ "$WARM" = first ] && WARM_ARMS=("${ARMS[0]}")
if [ "$WARM" = 1 ] || [ "$WARM" = first ]; then
  COMPILE_ID=$COMPILE_ID setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done
    [ -s "$2/convert.out" ] || { echo "no SmolLM2: no warm-up"; exit 0; }
    TORCH_COMPILE_JOB_ID=$COMPILE_ID exec python3 benchmarks/shapes_world_run.py --out "$2/A" --phases warm \
      --compile --workers 2 --examples "$3" --size "$4" --frames "$5" --arms "${@:6}"' warm "$CONVERT" "$R" "$EXAMPLES" "$SIZE" "$FRAMES" "${WARM_ARMS[@]}" \
    > "$R/warm.log" 2>&1 &
  WARM_PID=$!
fi
if [ -n "$TOKENIZER_STEPS" ]; then LENGTH=(--tokenizer-steps "$TOKENIZER_STEPS"); else LENGTH=(--tokenizer-minutes 3.5); fi
python3 benchmarks/shapes_world_run.py --out "$R/A" "${LENGTH[@]}" --shapes-images 3000 --shapes-clips 400 \
  ${CLIPS_WEIGHT:+--clips-weight "$CLIPS_WEIGHT"} ${TOKENIZER_EXTRA:+--tokenizer-extra $TOKENIZER_EXTRA} \
  --size "$SIZE" --frames "$FRAMES" --phases tokenizer
if [ -n "${WARM_PID:-}" ]; then
  kill -KILL -- -"$WARM_PID" 2>/dev/null
  wait "$WARM_PID" 2>/dev/null
  echo "warm-up stopped at $(( $(date +%s) - T0 )) s: $(tail -n 1 "$R/warm.log")"
  for LOG in "$R"/A/logs/warm-*.log; do [ -f "$LOG" ] && tr '\r' '\n' < "$LOG" | grep -a "train:" | tail -n 1; done
fi
wait "$CONVERT" || { echo "SmolLM2 conversion failed:"; tail -n 20 "$R/convert.log"; exit 1; }
LLM=$(tail -n 1 "$R/convert.out")
TOKENIZER_S=$(( $(date +%s) - T0 ))
echo "tokenizer done at $TOKENIZER_S s"
# The unified run's budget (its start-up included): what the tokenizer phase left of 19.5 minutes, unless given
UNIFIED_MINUTES=${UNIFIED_MINUTES:-$(python3 -c "import sys; print(round(max(1.0, 19.5 - int(sys.argv[1]) / 60), 1))" "$TOKENIZER_S")}
DIT_MINUTES=$(python3 -c "import sys; print(max(1.0, float(sys.argv[1]) - 4))" "$UNIFIED_MINUTES")
DITS=()
for POS in $DIT_POSITIONS; do
  python3 benchmarks/latent_dit_baseline.py --tokenizer "$R/A/tokenizer/export" --text-tokenizer "$LLM" --size "$SIZE" \
    --batch 256 --width 384 --depth 8 --heads 6 --minutes "$DIT_MINUTES" --steps 100000 --eval-at 800 2000 \
    --positions $POS --workers 2 --threads 2 --limit 24 --device cuda --json "$R/dit-$POS.json" \
    --grid "$R/dit-$POS.png" > "$R/dit-$POS.log" 2>&1 &
  DITS+=($!)
done
TORCH_COMPILE_JOB_ID=$COMPILE_ID python3 benchmarks/shapes_world_run.py --out "$R/A" --unified-minutes "$UNIFIED_MINUTES" \
  --compile --workers "$WORKERS" --examples "$EXAMPLES" --size "$SIZE" --frames "$FRAMES" --phases unified \
  --arms "${ARMS[@]}"
echo "unified done at $(( $(date +%s) - T0 )) s"
pack trained
wait "${DITS[@]}"
tail -n 3 "$R"/dit-*.log
EVAL_ARMS=()
for A in "${ARMS[@]}"; do  # the scorer reads each export's own config; the layout names the arm's edits
  LAYOUT=$(python3 -c "import sys; print('sti' if 'edit_layout=sti' in sys.argv[1] else 'independent')" "$A")
  EVAL_ARMS+=("${A%%=*}=model.edit_layout=$LAYOUT")
done
python3 benchmarks/shapes_world_run.py --out "$R/A" --phases eval --sample-steps 20 --guidance 3 \
  --samples-per-prompt "$SAMPLES" --size "$SIZE" --frames "$FRAMES" --arms "${EVAL_ARMS[@]}"
echo "eval done at $(( $(date +%s) - T0 )) s"
pack scored
ARMS_EFFECT=("${ARMS[@]}")  # INSTRUCTION_EFFECT=0: none (about a minute an arm)
[ "${INSTRUCTION_EFFECT:-1}" = 1 ] || ARMS_EFFECT=()
for A in "${ARMS_EFFECT[@]}"; do  # a diagnostic, bounded: what the job exists for is already packed
  timeout 240 python3 benchmarks/edit_instruction_effect.py --ckpt "$R/A/unified-${A%%=*}/export" --size "$SIZE" \
    --device cuda --guidance 3 10 > "$R/instr-${A%%=*}.txt" 2>&1 || echo "instruction effect: exit $?" >> "$R/instr-${A%%=*}.txt"
done
echo "all done at $(( $(date +%s) - T0 )) s"
pack done
touch "$R/DONE"
