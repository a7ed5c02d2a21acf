"""safety's URLs, included once at the root: the API (reports, blocks, appeals, the classifier)
under ``api/v1/`` in the ``safety_api`` namespace, and the moderation console under
``moderation/`` in ``safety_console``."""

from django.urls import include, path

from safety import api, console

api_urlpatterns = [
    path("reports", api.ReportView.as_view(), name="reports"),
    path("blocks", api.BlockView.as_view(), name="blocks"),
    path("appeals", api.AppealView.as_view(), name="appeals"),
    path("ml/safety/classify", api.ClassifyView.as_view(), name="classify"),
]

console_urlpatterns = [
    path("", console.queue_list, name="queue"),
    path("next", console.take_next, name="next"),
    path("items/<int:item_id>/", console.item_detail, name="item"),
    path("bulk", console.bulk_decide, name="bulk"),
    path("health", console.health, name="health"),
]

urlpatterns = [
    path("api/v1/", include((api_urlpatterns, "safety_api"))),
    path("moderation/", include((console_urlpatterns, "safety_console"))),
]
