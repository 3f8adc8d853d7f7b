"""How many entries a listing shows at a time, the same for every family and every caller.

The seeds' list calls allow 1 to 100 entries per page (20 by default). The CLI's options and
the stores' own refusals read these constants, so the bound is written once.
"""

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
