"""One training job: its validation, resources, data, model, probes, trainer, checkpoint,
stopping on signals, run record and TensorBoard writer. A job's config stays inside this room."""
