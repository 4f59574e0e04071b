from rest_framework import viewsets

from agents.api.conditional import ConditionalWritesMixin, conditional_schema
from phonenumbers_app.models import PhoneNumber

from .serializers import PhoneNumberSerializer


@conditional_schema(PhoneNumberSerializer)
class PhoneNumberViewSet(ConditionalWritesMixin, viewsets.ModelViewSet):
    """Phone numbers and the agent that answers each one."""

    queryset = PhoneNumber.objects.select_related("agent")
    serializer_class = PhoneNumberSerializer
