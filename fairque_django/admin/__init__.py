"""The "FairQueue" section of the Django admin, as a package: :mod:`.admin` registers the
ModelAdmins and their URLs, :mod:`.views` holds the pages, :mod:`.monitoring` the dashboard's
alerts, charts and starvation banner, :mod:`.format` the display helpers. Importing this package
(as ``admin.autodiscover()`` does) registers the ModelAdmins on the default admin site.
"""

from .admin import DeadLetterQueueAdmin, FairQueueAdmin
from .views import FairQueueViews, can_manage, can_view

__all__ = ["DeadLetterQueueAdmin", "FairQueueAdmin", "FairQueueViews", "can_manage", "can_view"]
