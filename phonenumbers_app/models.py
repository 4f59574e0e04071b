from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from agents.models import Agent
from globalvoice.tracking import SyncTrackedModel

from .e164 import e164_normalize, is_e164


class Provider(models.TextChoices):
    TWILIO = "twilio", "Twilio"
    VONAGE = "vonage", "Vonage"
    VAPI = "vapi", "Vapi"
    TELNYX = "telnyx", "Telnyx"
    BYO = "byo-phone-number", "Bring your own (SIP trunk)"


class PhoneNumber(SyncTrackedModel):
    """A phone number (E.164) or a SIP-only address, optionally answered by an agent."""

    number = models.CharField(max_length=20, null=True, blank=True, unique=True, help_text="E.164, e.g. +16826269224")
    sip_uri = models.CharField(max_length=255, blank=True, default="", verbose_name="SIP URI")
    name = models.CharField(max_length=40, blank=True, default="")
    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.VAPI)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="phone_numbers")
    vapi_phone_id = models.CharField(
        max_length=100, null=True, blank=True, unique=True, editable=False, verbose_name="Vapi phone id"
    )
    # The assistant Vapi routes this number to, as Vapi reported it (may name an
    # assistant that is not imported yet; `agent` links once it is).
    vapi_assistant_id = models.CharField(
        max_length=100, null=True, blank=True, editable=False, verbose_name="Vapi assistant id"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["number", "id"]
        indexes = [
            models.Index(fields=["vapi_phone_id"], name="idx_phone_numbers_vapi_phone_id"),
            models.Index(fields=["vapi_assistant_id"], name="idx_phone_numbers_vapi_asst_id"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(number__isnull=False) | ~Q(sip_uri=""),
                name="phone_number_has_number_or_sip_uri",
                violation_error_message="A phone number needs a number or a SIP URI.",
            )
        ]

    def __str__(self):
        return self.number or self.sip_uri or f"Phone number {self.pk}"

    # A writer that copies a number exactly as the provider holds it (restoring an imported record,
    # say) sets this on the instance: save() then stores the number as given, valid E.164 or not.
    keep_number_as_given = False

    @property
    def number_is_e164(self) -> bool:
        """False for a number kept as the provider holds it (not valid E.164, e.g. "1234")."""
        return is_e164(self.number)

    def number_to_store(self) -> str | None:
        """The number in E.164, or as it is stored when it has not changed.

        A provider may hold numbers that are not valid E.164 (a bring-your-own number with the
        check off: "1234", "+001234567890"); an import stores them as they are, and saving such a
        record again (a new name, another agent) keeps them. A new or changed number must be valid.
        Raises ValidationError otherwise."""
        if not self.number:
            return None
        if self.keep_number_as_given:
            return self.number
        try:
            normalized = e164_normalize(self.number)
        except ValidationError:
            normalized = None
        if normalized == self.number:
            return normalized
        if self.pk is not None and not self._state.adding:
            stored = type(self).objects.filter(pk=self.pk).values_list("number", flat=True).first()
            if stored == self.number:
                return stored
        return normalized if normalized is not None else e164_normalize(self.number)

    def clean(self):
        if self.number:
            try:
                self.number = self.number_to_store()
            except ValidationError as exc:  # shown beside the field in forms, not above the form
                raise ValidationError({"number": exc.error_list}) from exc
        elif not self.sip_uri:
            raise ValidationError({"number": "Enter a phone number, or a SIP URI for a SIP-only number."})

    def save(self, *args, **kwargs):
        # Normalise on every save path (forms, API, ORM); "" means "no number".
        self.number = self.number_to_store()
        super().save(*args, **kwargs)
