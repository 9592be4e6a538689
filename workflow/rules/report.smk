# The report: `snakemake --report report.html` gathers every output marked with report(...) in the
# stage rule files, under the categories below, with captions from workflow/report/*.rst.
