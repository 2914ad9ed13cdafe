from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from cdp import services
from cdp.models import ApiKey


class ApiKeyOutput(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "revoked_at", "is_active"]


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The secret key. Shown once, never again.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


class ApiKeyInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, allow_blank=False, trim_whitespace=True)


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Secret API keys (read and admin APIs). Creating one returns the key once."""

    serializer_class = ApiKeyOutput
    queryset = ApiKey.objects.order_by("-created_at")

    @extend_schema(request=ApiKeyInput, responses={201: ApiKeyCreatedOutput})
    def create(self, request):
        data = ApiKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = services.api_key_create(name=data.validated_data["name"])
        key.key = raw
        return Response(ApiKeyCreatedOutput(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses=ApiKeyOutput,
        description="Revoke the key: it is refused everywhere within API_KEY_CACHE_SECONDS (10 s by default).",
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        key = services.api_key_revoke(key=self.get_object())
        return Response(ApiKeyOutput(key).data)
