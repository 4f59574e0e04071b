from rest_framework import viewsets

from agents.models import Agent

from .conditional import ConditionalWritesMixin, conditional_schema
from .serializers import AgentSerializer


@conditional_schema(AgentSerializer)
class AgentViewSet(ConditionalWritesMixin, viewsets.ModelViewSet):
    """Voice agents. Saving one queues its push to Vapi (see the Vapi Sync section of the README)."""

    queryset = Agent.objects.all()
    serializer_class = AgentSerializer
    search_fields = ("name",)
