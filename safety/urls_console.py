from django.urls import path

from safety import console

app_name = "safety_console"

urlpatterns = [
    path("", console.queue_list, name="queue"),
    path("next", console.take_next, name="next"),
    path("items/<int:item_id>/", console.item_detail, name="item"),
    path("bulk", console.bulk_decide, name="bulk"),
    path("health", console.health, name="health"),
]
