"""``hydra-x demo``: train a small HYDRA-X on the embedded data, evaluate it and write an HTML / Markdown report.

The package sits above training and evaluation (it calls their ``train`` and ``evaluate*`` functions, never the
command line) and below the CLI (``hydra_x.cli.demo``); nothing else imports it. Nothing is imported here, so that
the command line can read the presets without loading training and evaluation.

    names.py      the option words (presets, LLM choices), light enough for the command line's parser
    config.py     DemoConfig, its parts and the presets (cpu, small, smoke); resolve() applies the options
    run.py        run_demo: the phases in order, reuse and --retrain of the trained runs
    training.py   train_or_reuse: one training run, reused while its export exists, resumed otherwise
    data.py       the shapes-world renders the tokenizer trains on
    llm.py        which LLM the unified model starts from (SmolLM2 or a config-built one)
    evaluate.py   the evaluations (as hydra-x eval recon and eval shapes) and the headline figures
    showcase.py   the pictures: reconstructions, generations for fixed prompts, answers, edits
    phases.py     phases 3 to 6: evaluate, showcase, report
    content.py    the report's tables and plots, from the evaluations' reports and the run logs
    report.py     index.html, report.md and summary.json from those tables
    plots.py      loss curves as inline SVG and PNG (no matplotlib)
"""
