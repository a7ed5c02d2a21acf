"""The HTTP API of recommender, one module per resource: profiles, events, feed, batch (the ML
API under api/v1/ml/) and health. Each holds its thin views with their input and output
serializers beside them; common.py what they share; recommender/urls.py routes them. Shapes
that other ways in check too (a profile, a swipe, an impression, a match) are in
recommender/validation.py, below both the API and the services."""
