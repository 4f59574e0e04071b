"""Admin forms of versioned records: a change form saves only over the version it was opened on.

A person opens an agent; meanwhile an import renames it; the person saves, having changed only the
first message. Without a check the form would write the old name back (and a sync would push it).
The form carries the record's version in a hidden field; on save the record is read again, locked
until the transaction ends, and a different version refuses the form with the admin's own error
list, naming each field where the form and the stored record now differ. Nothing is written. (A
form that differs in nothing, such as the same form sent twice, saves: it cannot undo anything.)

The admin runs the whole change view in one transaction, so the check and the write are atomic:
the re-read takes a row lock (SELECT ... FOR UPDATE) on PostgreSQL, and SQLite's IMMEDIATE
transactions hold the database's write lock from the start.

django-concurrency (2.8.1, Django 6.0) was considered: it needs its own version field type on the
model and answers only "Record Modified", without saying what changed.
"""

from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.db import models, transaction
from django.utils.html import format_html_join
from django.utils.text import Truncator

from .catalogue import choice_errors, provider_choices, published_names
from .models import Agent

VERSION_FIELD = "seen_version"
_SHOWN_CHARS = 120


class VersionCheckedForm(forms.ModelForm):
    seen_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields[VERSION_FIELD].initial = self.instance.version

    def full_clean(self):
        super().full_clean()
        if self.is_bound and self.instance.pk is not None and hasattr(self, "cleaned_data"):
            self._check_version()

    def _check_version(self):
        model = type(self.instance)
        stored = model._default_manager.filter(pk=self.instance.pk)
        if transaction.get_connection().in_atomic_block:
            stored = stored.select_for_update()  # held until the admin's transaction commits
        current = stored.first()
        noun = model._meta.verbose_name
        if current is None:
            self.add_error(None, f"This {noun} was deleted after you opened this page. Nothing was saved.")
            return
        seen = self.cleaned_data.get(VERSION_FIELD)
        if seen == current.version:
            return
        if seen is None:
            self.add_error(None, f"This form does not say which version of the {noun} it was opened on. "
                                 "Nothing was saved: reload the page and make your change again.")
            return
        differences = list(self._differences(current))
        if not differences:
            return  # the record already holds exactly this form's values (e.g. the same form sent twice)
        messages = [
            f"This {noun} was changed (by someone else or by a sync) after you opened this page: "
            f"your form shows version {seen}, it is now at version {current.version}. Nothing was saved. "
            "Reload the page to see the current values, then make your change again."
        ]
        messages += [f"{label}: your value {mine} / current value {theirs}" for label, mine, theirs in differences]
        self.add_error(None, messages)

    def _differences(self, current):
        """(label, your value, current value) for each field where this form and the stored record differ."""
        for name, field in self.fields.items():
            if name == VERSION_FIELD:
                continue
            try:
                model_field = self.instance._meta.get_field(name)
            except FieldDoesNotExist:
                continue
            mine = model_field.value_from_object(self.instance)
            theirs = model_field.value_from_object(current)
            if (mine or None) == (theirs or None):
                continue
            if isinstance(model_field, models.ForeignKey):
                mine, theirs = getattr(self.instance, name), getattr(current, name)
            yield field.label or name, _shown(mine), _shown(theirs)


def _shown(value) -> str:
    if value in (None, ""):
        return "(empty)"
    return f"“{Truncator(str(value)).chars(_SHOWN_CHARS)}”"


class VersionCheckedAdminMixin:
    """Puts the hidden version field into the change form (the admin renders only fieldset fields)."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        name, options = fieldsets[0]
        fieldsets[0] = (name, {**options, "fields": (*options["fields"], VERSION_FIELD)})
        return fieldsets


class NameSuggestions(forms.TextInput):
    """A text input that suggests the names the chosen provider publishes: one <datalist> per provider,
    and agents/provider_names.js points the input at the list of the provider selected."""

    def __init__(self, names_by_provider: dict[str, tuple[str, ...]], provider_field: str, attrs=None):
        super().__init__(attrs)
        self.names_by_provider = names_by_provider
        self.provider_field = provider_field

    def render(self, name, value, attrs=None, renderer=None):
        attrs = {**(attrs or {}), "data-names-from": f"id_{self.provider_field}", "autocomplete": "off"}
        input_id = attrs.get("id") or f"id_{name}"
        lists = format_html_join("", '<datalist id="{}-names-{}">{}</datalist>', (
            (input_id, provider, format_html_join("", '<option value="{}">', ((n,) for n in names)))
            for provider, names in self.names_by_provider.items()
        ))
        return super().render(name, value, attrs, renderer) + lists


class AgentAdminForm(VersionCheckedForm):
    """Providers as choices, model and voice names suggested and checked where the platform publishes a list."""

    class Meta:
        model = Agent
        fields = "__all__"

    class Media:
        js = ("agents/provider_names.js",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("model_provider", "voice_provider"):
            field = self.fields.get(name)
            choices = provider_choices(name, current=getattr(self.instance, name) if self.instance.pk else None)
            if field is not None and choices is not None:
                self.fields[name] = forms.ChoiceField(
                    choices=choices, label=field.label, help_text=field.help_text, required=field.required,
                    initial=field.initial,
                )
        for name, provider_field in (("model", "model_provider"), ("voice_id", "voice_provider")):
            field, names = self.fields.get(name), published_names(provider_field)
            if field is not None and names:
                field.widget = NameSuggestions(names, provider_field, attrs=field.widget.attrs)

    def clean(self):
        cleaned = super().clean()
        names = ("model_provider", "model", "voice_provider", "voice_id")
        previous = {name: getattr(self.instance, name) for name in names} if self.instance.pk else None
        values = {name: cleaned.get(name, getattr(self.instance, name)) for name in names}
        for name, errors in choice_errors(values, previous).items():
            if name in self.fields and name in cleaned:
                self.add_error(name, errors)
        return cleaned
