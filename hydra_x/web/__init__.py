"""The web app (``hydra-x serve``): a Gradio page over one unified checkpoint, for reconstruction, text to image,
text to video, chat about an image or a video, and editing.

    uploads.py     limits, and uploads read with the library's readers after cheap checks (bytes, header)
    session.py     a browser session's private output folder
    tasks.py       one plain function per tab (no Gradio): what the tests call without a browser
    checkpoint.py  which checkpoint is served (DEFAULT_DEMO_CHECKPOINT: the demo's export)
    app.py         the gr.Blocks page and its launch; the only module that imports Gradio, and only when called

Gradio is an optional dependency (``pip install 'hydra-x[web]'``): importing this package does not need it.
See docs/web.md.
"""
