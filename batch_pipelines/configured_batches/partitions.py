"""The dynamic partition set of preference groups.

Dagster cannot add schedules without reloading the code location, so every preference group
(users sharing feature type, frequency, day, time and timezone) is one partition of this set;
the preference sensors add and remove its keys as preferences change, and the preference
batch asset runs one group per partition.
"""

import dagster as dg

PREFERENCE_GROUPS = dg.DynamicPartitionsDefinition(name="preference_group")
