from agents.forms import VersionCheckedForm

from .models import PhoneNumber


class PhoneNumberAdminForm(VersionCheckedForm):
    class Meta:
        model = PhoneNumber
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        number = self.fields.get("number")
        if number is not None and self.instance.number and not self.instance.number_is_e164:
            # An imported number the provider holds as it is (e.g. "1234"): it stays as it is while
            # unchanged, so the name and agent remain editable.
            number.help_text = (
                "Kept exactly as the provider holds it: not a valid E.164 number. Leave it as it is to keep it; "
                "a new number must be valid E.164."
            )
