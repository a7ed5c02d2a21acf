from __future__ import annotations

from django import forms

from safety.models import PolicyLabel
from safety.services import HUMAN_ACTIONS


class DecisionForm(forms.Form):
    action = forms.ChoiceField(choices=[(a.value, a.label) for a in HUMAN_ACTIONS], widget=forms.RadioSelect)
    policy_label = forms.ChoiceField(choices=[("", "— policy label —"), *PolicyLabel.choices])
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


class AppealForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("accept", "accept (reverse)"), ("reject", "reject")], widget=forms.RadioSelect
    )
    policy_label = forms.ChoiceField(choices=[("", "— policy label —"), *PolicyLabel.choices])
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


class BulkForm(DecisionForm):
    items = forms.CharField(widget=forms.MultipleHiddenInput, required=False)
