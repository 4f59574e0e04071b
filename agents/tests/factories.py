import factory

from agents.models import Agent


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    name = factory.Sequence(lambda n: f"Agent {n}")
    system_prompt = "You are a helpful receptionist."
    first_message = "Hello, how can I help?"
