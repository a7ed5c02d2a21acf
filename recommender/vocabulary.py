"""Profile vocabulary shared by the Django models and the framework-free code (no Django here).

The lifestyle attributes are those of the OkCupid codebook; ``height`` is in centimetres.
"""

GENDERS: tuple[str, ...] = ("woman", "man", "nonbinary")

# Ages a profile may have. An age preference of MIN_AGE..MAX_AGE (the API's default when none is
# given, or null) states no preference: it filters nobody and is neutral in scoring.
MIN_AGE = 18
MAX_AGE = 120

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
