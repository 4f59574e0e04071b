from rest_framework import viewsets

from agents.models import Agent

from .serializers import AgentSerializer


class AgentViewSet(viewsets.ModelViewSet):
    """Voice agents. Saving one queues its push to Vapi (see the Vapi Sync section of the README)."""

    queryset = Agent.objects.all()
    serializer_class = AgentSerializer
    search_fields = ("name",)
