"""Snakemake `script:` entry of rule `images_plot`: the average jet image per class of the test split."""

from jetfm.images.plots import write_average_images
from jetfm.logs import redirect_to_log
from jetfm.models import make_size

with redirect_to_log(snakemake.log[0]):
    write_average_images(
        list(snakemake.input.test),
        make_size("cnn", snakemake.config["train"]["sizes"]["cnn"]).image_spec(),
        snakemake.output.figure,
        max_jets=snakemake.config["images"]["plot_max_jets"],
        config=snakemake.config,
    )
