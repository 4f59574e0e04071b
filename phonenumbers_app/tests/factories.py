import factory

from phonenumbers_app.models import PhoneNumber, Provider


class PhoneNumberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PhoneNumber

    # Valid US numbers in the 972 (Dallas) area: +1 972 474 0000 and up.
    number = factory.Sequence(lambda n: f"+1972474{n % 10000:04d}")
    name = factory.Sequence(lambda n: f"Line {n}")
    provider = Provider.VAPI
