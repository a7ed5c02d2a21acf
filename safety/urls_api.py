from django.urls import path

from safety import api

app_name = "safety_api"

urlpatterns = [
    path("reports", api.ReportView.as_view(), name="reports"),
    path("blocks", api.BlockView.as_view(), name="blocks"),
    path("appeals", api.AppealView.as_view(), name="appeals"),
    path("ml/safety/classify", api.ClassifyView.as_view(), name="classify"),
]
