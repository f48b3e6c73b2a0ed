"""Tasks and their data: the registry, the sources, the verbalizer, encoded splits.

- ``tasks``: ``TaskSpec`` per task in one registry (``get_task``, ``register_task``).
- ``sources``: reading a task from the hub, local files or a custom YAML, split as the
  paper does (``load_task``, ``load_custom_task``, ``load_data``).
- ``verbalizer``: templates and label words as token ids (``encode``, ``label_word_ids``).
- ``encoded``: ``Encoded`` splits for a model and ``encode_split`` (imports torch).
"""

from .sources import (
           Example,
           Split,
           TaskData,
           is_task_file,
           load_custom_task,
           load_task,
           stratified_split,
)
from .tasks import (
           HubSource,
           LocalSource,
           Metric,
           Protocol,
           TaskSpec,
           get_task,
           list_tasks,
           register_task,
)

__all__ = ["Example", "Split", "TaskData", "is_task_file", "load_custom_task", "load_task", "stratified_split",
           "HubSource", "LocalSource", "Metric", "Protocol", "TaskSpec", "get_task", "list_tasks", "register_task"]
