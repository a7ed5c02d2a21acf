"""Profile vocabulary shared by the Django models and the framework-free code (no Django here).

The lifestyle attributes are those of the OkCupid codebook; ``height`` is in centimetres.
"""

GENDERS: tuple[str, ...] = ("woman", "man", "nonbinary")

LIFESTYLE_FIELDS: tuple[str, ...] = (
    "body_type",
    "diet",
    "drinks",
    "drugs",
    "education",
    "ethnicity",
    "height",
    "job",
    "offspring",
    "orientation",
    "pets",
    "religion",
    "smokes",
    "speaks",
    "relationship_status",
)
