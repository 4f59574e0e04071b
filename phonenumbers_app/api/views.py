from rest_framework import viewsets

from phonenumbers_app.models import PhoneNumber

from .serializers import PhoneNumberSerializer


class PhoneNumberViewSet(viewsets.ModelViewSet):
    """Phone numbers and the agent that answers each one."""

    queryset = PhoneNumber.objects.select_related("agent")
    serializer_class = PhoneNumberSerializer
