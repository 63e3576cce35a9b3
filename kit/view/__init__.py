"""The results viewer (``make view``): a local web page over a results folder, with NiiVue.

Modules: ``paths`` (safe paths under a folder), ``studies`` (reports, label maps and their CT),
``runs`` (pipeline runs and DICOM listener jobs), ``server`` (the HTTP server), ``state`` (the pid
recorded under ``$ODK_RUN_DIR/view``), ``__main__`` (the command line).
"""
