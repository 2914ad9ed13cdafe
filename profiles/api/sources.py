from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from profiles import services
from profiles.models import Source


class SourceOutput(serializers.ModelSerializer):
    class Meta:
        model = Source
        fields = ["id", "name", "write_key_prefix", "is_active", "created_at"]


class SourceCreatedOutput(SourceOutput):
    write_key = serializers.CharField(help_text="The write key. Shown once, never again.")

    class Meta(SourceOutput.Meta):
        fields = [*SourceOutput.Meta.fields, "write_key"]


class SourceInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, allow_blank=False, trim_whitespace=True)


class SourceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Event sources. Creating one returns its write key once."""

    serializer_class = SourceOutput
    queryset = Source.objects.order_by("name")

    @extend_schema(request=SourceInput, responses={201: SourceCreatedOutput})
    def create(self, request):
        data = SourceInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            source, raw = services.source_create(name=data.validated_data["name"])
        except services.SourceNameTaken as exc:
            raise serializers.ValidationError({"name": [str(exc)]}) from exc
        source.write_key = raw
        return Response(SourceCreatedOutput(source).data, status=status.HTTP_201_CREATED)
