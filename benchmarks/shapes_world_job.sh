#!/bin/bash
# The shapes world within the issue's budget on one GPU, as one job: the `small` tokenizer (3.5 minutes), then ONE
# unified run with the GPU to itself (16 minutes, so tokenizer and unified model take 19.5 of the 20), beside it two
# plain in-context DiTs on the same tokenizer's latents (benchmarks/latent_dit_baseline.py, light processes whose
# batches are rendered in workers; learnt positions, and fixed 2D sin-cos ones), then `hydra-x eval shapes` on the
# whole held-out set (24 prompts a category) and the instruction effect of the edits. Run from the repository root:
#
#     R=/path/to/results bash benchmarks/shapes_world_job.sh       # writes R/A/..., R/dit-*, R/instr.txt, R/DONE
#
# Overrides of the unified run: ARM="key=value,..." (default: the `small` recipe with edits weighted 4 and two
# attention layers in the flow head that join at step 800, the best arm of three in the twenty-first session's run).
set -x
R=${R:-runs/shapes-world-job}
ARM=${ARM:-model.edit_layout=independent,data.task_ratios.edit=4,model.head_attention_layers=2,head_attention_from_step=800}
UNIFIED_MINUTES=${UNIFIED_MINUTES:-16}
mkdir -p "$R"
T0=$(date +%s)
LLM=$(python3 -m hydra_x.unified.llm convert-smollm2 2> "$R/convert.log" | tail -n 1)
python3 benchmarks/shapes_world_run.py --out "$R/A" --tokenizer-minutes 3.5 --shapes-images 3000 --shapes-clips 400 \
  --phases tokenizer
echo "tokenizer done at $(( $(date +%s) - T0 )) s"
DITS=()
for POS in learnt sincos; do  # learnt positions alone, and fixed 2D sin-cos ones added (DiT's; 6x fewer examples on the CPU)
  python3 benchmarks/latent_dit_baseline.py --tokenizer "$R/A/tokenizer/export" --text-tokenizer "$LLM" --size 128 \
    --batch 256 --width 384 --depth 8 --heads 6 --minutes $(( UNIFIED_MINUTES - 4 )) --steps 100000 --eval-at 800 2000 \
    --positions $POS --workers 2 --threads 2 --limit 24 --device cuda --json "$R/dit-$POS.json" \
    --grid "$R/dit-$POS.png" > "$R/dit-$POS.log" 2>&1 &
  DITS+=($!)
done
python3 benchmarks/shapes_world_run.py --out "$R/A" --unified-minutes "$UNIFIED_MINUTES" --compile --workers 6 \
  --phases unified --arms "one=$ARM"
echo "unified done at $(( $(date +%s) - T0 )) s"
wait "${DITS[@]}"
tail -n 3 "$R"/dit-*.log
LAYOUT=$(python3 -c "import sys; print('sti' if 'edit_layout=sti' in sys.argv[1] else 'independent')" "$ARM")
python3 benchmarks/shapes_world_run.py --out "$R/A" --phases eval --sample-steps 20 --guidance 3 \
  --arms "one=model.edit_layout=$LAYOUT"
echo "eval done at $(( $(date +%s) - T0 )) s"
python3 benchmarks/edit_instruction_effect.py --ckpt "$R/A/unified-one/export" --size 128 --device cuda \
  --guidance 3 10 > "$R/instr.txt" 2>&1
echo "all done at $(( $(date +%s) - T0 )) s"
touch "$R/DONE"
